#!/usr/bin/env python3
"""Checks that every repository path quoted in the project's comments and documents exists.

    check_paths.py [ROOT]

Scans the comments of the project's sources and scripts (C++, CUDA, CMake, shell, Python: its
comments and docstrings) and the whole text of its documents (Markdown) under ROOT (default: the
repository this script is in) for

  - paths into the repository: a top-level folder of it followed by a path
    ("libnn/src/cpu/gemm_cpu.cpp", "docs/reliability.md", "bench/results/"), and
  - bare source file names ("conv_cpu.cpp", "cuda_util.cuh"),

and prints each one that does not exist (for a bare name: no file of that name anywhere in the
repository), with where it was quoted. Placeholders are skipped (anything with <, >, *, {, },
$, NNNN, YYYY, or a path under a build folder), and so are names of files outside the project
listed in EXTERNAL below (system headers, upstream files, weight files a user downloads). Exit
status 1 when something is missing. Run by CTest (repository_paths_exist).
"""
import os
import re
import sys

TOP = ("libnn", "kernels", "models", "examples", "weights", "tests", "bench", "docs", "scripts", "cmake", ".ci")
SCANNED = (".cpp", ".h", ".cu", ".cuh", ".def", ".txt", ".cmake", ".sh", ".py", ".md", ".in")
SKIP_DIRS = {".git", "__pycache__", "results", "images"}
SOURCE_EXT = ("cpp", "h", "cu", "cuh", "py", "sh")

# Files that are not part of this repository but are named in it.
EXTERNAL = {
    # system and library headers
    "stb_image.h", "stb_image_write.h", "jpeglib.h", "jerror.h", "jconfig.h", "zlib.h", "cudnn.h",
    "cublas_v2.h", "cuda_runtime.h", "cuda_fp16.h", "cuda_bf16.h", "omp.h", "hdf5.h", "zip.h", "cblas.h",
    "immintrin.h", "turbojpeg.h", "mma.h", "cuda.h", "pybind11.h",
    # upstream code read while writing ours
    "llm.c", "test-backend-ops.cpp", "gemm.cu", "conv2d.cu", "torch_checkpoint.py", "safetensors_writer.py",
    "ggml.c", "winograd.cpp", "convolution_3x3_winograd.h",
    # Python modules and files of other projects, and users' files
    "setup.py", "conftest.py", "__init__.py",
    # made at build or test time
    "pneumonia_web_page.h", "plstream.h",
}
# Paths inside the repository that users create (documented places for their own files).
USER_FILES = {"weights/vgg16_imagenet.safetensors"}


def build_dir(part):
    return part.startswith("build") or part in ("CMakeFiles", "Testing")


def candidates(text):
    """(token, kind) for path-like tokens in `text`."""
    top = "|".join(re.escape(t) for t in TOP)
    for m in re.finditer(r"(?<![\w./<>-])((?:%s)/[\w.+/-]*)" % top, text):
        yield m.group(1), "path"
    for m in re.finditer(r"(?<![\w./<>-])([A-Za-z][\w+-]{2,}\.(?:%s))(?![\w/])" % "|".join(SOURCE_EXT), text):
        yield m.group(1), "name"


def comment_lines(rel, lines):
    """(line number, text) of the comments and docstrings of a source file; every line of a document."""
    if rel.endswith(".md"):
        return list(enumerate(lines, 1))
    out = []
    c_like = rel.endswith((".cpp", ".h", ".cu", ".cuh", ".def"))
    python = rel.endswith(".py")
    in_block = False
    for number, line in enumerate(lines, 1):
        if c_like:
            if in_block:
                end = line.find("*/")
                out.append((number, line if end < 0 else line[:end]))
                in_block = end < 0
                continue
            start = line.find("/*")
            slash = line.find("//")
            if slash >= 0 and (start < 0 or slash < start):
                out.append((number, line[slash + 2:]))
            elif start >= 0:
                end = line.find("*/", start + 2)
                out.append((number, line[start + 2:] if end < 0 else line[start + 2:end]))
                in_block = end < 0
        else:
            if python and in_block:
                out.append((number, line))
                in_block = line.count('"""') % 2 == 0
                continue
            if python and line.count('"""') % 2 == 1:
                out.append((number, line))
                in_block = True
                continue
            if python and '"""' in line:
                out.append((number, line))
                continue
            hash_at = line.find("#")
            if hash_at >= 0 and not (hash_at > 0 and line[hash_at - 1] in "$"):
                out.append((number, line[hash_at + 1:]))
    return out


def placeholder(token, line, end):
    if any(c in token for c in "<>*{}$"):
        return True
    if re.search(r"NNNN|YYYY|XXXX|\bNAME\b|\bTARGET\b", token):
        return True
    following = line[end:end + 1]
    return following in ("<", "*", "{", "$")


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    names = set()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        parts = [] if rel_dir == "." else rel_dir.split(os.sep)
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__") and not (not parts and build_dir(d))]
        for f in filenames:
            names.add(f)
            rel = os.path.join(rel_dir, f) if parts else f
            if f.endswith(SCANNED) or f in ("CMakeLists.txt", "run"):
                if not any(p in SKIP_DIRS for p in parts):
                    files.append(rel)
    missing = []
    for rel in sorted(files):
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in comment_lines(rel, lines):
            for token, kind in candidates(line):
                end = line.find(token) + len(token)
                if placeholder(token, line, end):
                    continue
                token = token.rstrip(".,:;)")
                if kind == "path":
                    parts = token.split("/")
                    if any(build_dir(p) for p in parts) or token in USER_FILES:
                        continue
                    full = os.path.join(root, token)
                    if os.path.exists(full):
                        continue
                    # A module named without its extension ("examples/pneumonia/common/trainer").
                    folder, stem = os.path.split(full)
                    if os.path.isdir(folder) and any(os.path.splitext(f)[0] == stem for f in os.listdir(folder)):
                        continue
                    missing.append((rel, number, token))
                else:
                    if token in EXTERNAL or token in names:
                        continue
                    missing.append((rel, number, token))
    for rel, number, token in missing:
        print(f"{rel}:{number}: '{token}' does not exist in the repository")
    print(f"checked {len(files)} files: {len(missing)} missing path(s)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
