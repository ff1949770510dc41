#!/usr/bin/env python3
"""Writes the DICOM files tests/test_dicom.cpp decodes, with pydicom (Debian python3-pydicom).

    make_dicom.py SPEC.json OUT_DIR

SPEC.json is a list of cases; each becomes OUT_DIR/<name>.dcm. A case gives the image
("rows", "columns", "pixels": the stored values row by row, frame after frame; "bits_allocated",
"bits_stored", "high_bit", "signed", "samples_per_pixel", "photometric", "frames") and optionally
"slope", "intercept", "window_center", "window_width" (decimal strings or lists of them),
"voi_lut_function", "patient_name", "no_pixel_data", "float_pixel_data", "raw" (pixels are the raw
words, unused high bits included), "transfer_syntax", "transfer_syntax_uid" (any UID written into
the file meta information of an explicit VR little endian file) and "split" (a compressed frame cut
into fragments of at most this many bytes, by gdcmconv --split).

transfer_syntax: "explicit" (default), "implicit", "big" and "deflated" are written by pydicom;
"jpeg-lossless" (Process 14, SV1), "jpeg-baseline", "jpeg-ls", "jpeg-ls-near", "j2k" and "rle" are
made from the explicit file by GDCM's gdcmconv (Debian libgdcm-tools) when it is installed. Writes
OUT_DIR/manifest.json: {name: "ok" | "skipped: REASON"}. Exits 77 when pydicom is missing.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                             ImplicitVRLittleEndian)
except ImportError:
    print("make_dicom.py: pydicom is not installed (apt install python3-pydicom)", file=sys.stderr)
    sys.exit(77)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
NATIVE = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian, "big": ExplicitVRBigEndian,
          "deflated": DeflatedExplicitVRLittleEndian}
# gdcmconv's flags and the transfer syntax its output must have.
GDCMCONV = {
    "jpeg-lossless": (["--jpeg"], "1.2.840.10008.1.2.4.70"),
    "jpeg-baseline": (["--jpeg", "--lossy", "-q", "95"], "1.2.840.10008.1.2.4.50"),
    "jpeg-ls": (["--jpegls"], "1.2.840.10008.1.2.4.80"),
    "jpeg-ls-near": (["--jpegls", "--lossy", "-e", "2"], "1.2.840.10008.1.2.4.81"),
    "j2k": (["--j2k"], "1.2.840.10008.1.2.4.90"),
    "rle": (["--rle"], "1.2.840.10008.1.2.5"),
}


def pixel_bytes(case, big_endian):
    bits = case.get("bits_allocated", 16)
    signed = case.get("signed", False) and not case.get("raw", False)
    code = {8: "b", 16: "h", 32: "i"}[bits]
    if not signed:
        code = code.upper()
    data = struct.pack((">" if big_endian else "<") + code * len(case["pixels"]), *case["pixels"])
    return data + (b"\0" if len(data) % 2 else b"")


def write_native(case, path, syntax):
    uid = case.get("transfer_syntax_uid", NATIVE[syntax])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = uid
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.is_little_endian = syntax != "big"
    ds.is_implicit_VR = syntax == "implicit"
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.PatientName = case.get("patient_name", "Test^Image")
    ds.PatientID = case.get("patient_id", "T-0001")
    ds.PatientBirthDate = case.get("patient_birth_date", "19700101")
    ds.InstitutionName = case.get("institution", "nn tests")
    ds.Modality = "CR"
    bits = case.get("bits_allocated", 16)
    stored = case.get("bits_stored", bits)
    ds.SamplesPerPixel = case.get("samples_per_pixel", 1)
    ds.PhotometricInterpretation = case.get("photometric", "MONOCHROME2")
    if ds.SamplesPerPixel > 1:
        ds.PlanarConfiguration = 0
    if "frames" in case:
        ds.NumberOfFrames = case["frames"]
    ds.Rows = case["rows"]
    ds.Columns = case["columns"]
    ds.BitsAllocated = bits
    ds.BitsStored = stored
    ds.HighBit = case.get("high_bit", stored - 1)
    ds.PixelRepresentation = 1 if case.get("signed", False) else 0
    for key, keyword in (("window_center", "WindowCenter"), ("window_width", "WindowWidth"),
                         ("intercept", "RescaleIntercept"), ("slope", "RescaleSlope"),
                         ("voi_lut_function", "VOILUTFunction")):
        if key in case:
            setattr(ds, keyword, case[key])
    if case.get("float_pixel_data"):
        ds.FloatPixelData = struct.pack("<%df" % len(case["pixels"]), *case["pixels"])
    elif not case.get("no_pixel_data"):
        data = pixel_bytes(case, syntax == "big")
        if uid not in NATIVE.values():  # a compressed transfer syntax pydicom wants encapsulated
            data = encapsulate([data])
        ds.PixelData = data
        ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds.save_as(path, write_like_original=False)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    out_dir = sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    gdcmconv = shutil.which("gdcmconv")
    manifest = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            name = case["name"]
            path = os.path.join(out_dir, name + ".dcm")
            syntax = case.get("transfer_syntax", "explicit")
            if syntax in NATIVE:
                write_native(case, path, syntax)
                manifest[name] = "ok"
                continue
            if gdcmconv is None:
                manifest[name] = "skipped: gdcmconv is not installed (apt install libgdcm-tools)"
                continue
            flags, uid = GDCMCONV[syntax]
            source = os.path.join(tmp, name + ".explicit.dcm")
            write_native(case, source, "explicit")
            run = subprocess.run([gdcmconv, "--quiet", *flags, source, path], capture_output=True, text=True)
            if run.returncode != 0 or not os.path.exists(path):
                manifest[name] = "skipped: gdcmconv %s failed: %s" % (" ".join(flags), run.stderr.strip()[-200:])
                continue
            if "split" in case:
                whole = os.path.join(tmp, name + ".whole.dcm")
                os.replace(path, whole)
                run = subprocess.run([gdcmconv, "--quiet", "--split", str(case["split"]), whole, path],
                                     capture_output=True, text=True)
                if run.returncode != 0 or not os.path.exists(path):
                    manifest[name] = "skipped: gdcmconv --split failed: %s" % run.stderr.strip()[-200:]
                    continue
            got = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
            if got != uid:
                manifest[name] = "skipped: gdcmconv %s wrote transfer syntax %s, not %s" % (" ".join(flags), got, uid)
                continue
            manifest[name] = "ok"
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
