// The library's only contact with GDCM (Grassroots DICOM; Debian libgdcm-dev 3.0.21), compiled
// only when nn is built with it (CMake option NN_DICOM; the macro NN_WITH_DICOM). GDCM's headers
// never leave data/dicom_decode.cpp.
//
// GDCM 3.0.21 as Debian ships it keeps its assert()s live, follows many "broken file" recovery
// paths, trusts declared lengths (it allocates a value's declared length before reading it) and
// writes past its buffer when a JPEG 2000 codestream disagrees with the DICOM header. So nothing
// reaches GDCM unchecked: the whole file is first walked here (file meta information, every data
// element, sequence, item and fragment, strictly as PS3.5 encodes them), the image attributes are
// checked, and the compressed pixel data's own header (JPEG frame, JPEG-LS frame, JPEG 2000 SIZ,
// RLE header) is checked against them. Only then does gdcm::Reader parse the data set (from
// memory, through a std::istream over the bytes) and one of GDCM's codecs decode the pixel data,
// called directly (gdcm::Bitmap::GetBuffer would fall back to running the pvrg-jpeg program on a
// temporary file when its JPEG decoder fails).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "nn/data/image.h"

namespace nn::data::detail {

// Decodes a DICOM Part 10 file (a 128-byte preamble, "DICM", the file meta information, the data
// set) to a 1-channel image with values in [0, 1], processed as nn/data/image.h's decode_image says
// (modality LUT, VOI LUT, MONOCHROME1 inversion). Every failure is an nn::Error "cannot decode
// image 'SOURCE': REASON" whose reason is technical only: no value of the data set (patient name,
// IDs, dates, ...) is ever put in a message, printed or logged. check_size(columns, rows) is called
// with the header's size once the header is read and before any pixel data is decoded; it throws
// to refuse. `limits` also bounds how far a deflated data set may inflate.
Image decode_dicom(const uint8_t* data, size_t size, const std::string& source, const ImageLimits& limits,
                   const std::function<void(uint64_t columns, uint64_t rows)>& check_size);

}  // namespace nn::data::detail
