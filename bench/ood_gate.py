#!/usr/bin/env python3
"""How much of a varied set of images that are NOT chest X-rays the out-of-distribution gate of a
pneumonia model refuses (examples/pneumonia/common/ood_gate.h, docs/ood_gate.md).

    python3 bench/ood_gate.py --model RUN/model.safetensors [--build build] [--out DIR] [--json OUT]

The set is built here, from images that packages ship and from generated ones, never downloaded at
run time: scikit-image's sample images (photos of people, animals and objects, textures,
documents, microscopy, a retina, a CT phantom, astronomy) and matplotlib's (a portrait, an MRI
slice, terrain models), each colour image also in gray; and generated blank, noise, gradient,
stripe and pattern images, gray and colour. scikit-image and matplotlib come from PyPI into a
virtual environment (build/venv-ood; test-only, never a run-time dependency of nn) when the
python3 running this lacks them.

Runs pneumonia-predict --json on the set and prints, per category and overall, the images refused
(target: at least 95%), with every image's answer; --json writes it all. The rate at which real
chest X-rays are refused is not measured here: pneumonia-train reports it on the held-out folds of
its cross-validation (protocol.json, "refused_by_gate" of each condition).
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_packages(build):
    """Re-runs this script under a virtual environment with scikit-image and matplotlib when the
    current interpreter lacks them."""
    try:
        import matplotlib  # noqa: F401
        import skimage  # noqa: F401
        return
    except ImportError:
        pass
    venv = os.path.join(build, "venv-ood")
    python = os.path.join(venv, "bin", "python3")
    if os.environ.get("NN_OOD_REEXEC"):
        sys.exit("scikit-image and matplotlib are still missing in " + venv)
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "scikit-image", "matplotlib"])
    os.environ["NN_OOD_REEXEC"] = "1"
    os.execv(python, [python] + sys.argv)


def build_set(out):
    """Writes the images into out/<category>/<name>.png; returns {path: category}."""
    import numpy as np
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import skimage.data as data
    from skimage import io as skio

    images = {}

    def save(category, name, array):
        folder = os.path.join(out, category)
        os.makedirs(folder, exist_ok=True)
        a = np.asarray(array)
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        elif a.dtype != np.uint8:
            a = a.astype(np.float64)
            lo, hi = float(a.min()), float(a.max())
            a = ((a - lo) / (hi - lo if hi > lo else 1.0) * 255).round().astype(np.uint8)
        path = os.path.join(folder, name + ".png")
        skio.imsave(path, a, check_contrast=False)
        images[path] = category

    def gray(a):
        a = np.asarray(a)[..., :3].astype(np.float64)
        return (0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]).round().astype(np.uint8)

    def both(category, name, rgb):
        save(category, name, rgb)
        save(category, name + "-gray", gray(rgb))

    # Photos: people, animals, objects, scenes.
    both("photo", "astronaut", data.astronaut())
    both("photo", "cat", data.chelsea())
    both("photo", "coffee", data.coffee())
    both("photo", "rocket", data.rocket())
    save("photo", "cameraman", data.camera())
    save("photo", "clock", data.clock())
    save("photo", "coins", data.coins())
    save("photo", "horse-silhouette", data.horse())
    mpl_data = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    both("photo", "grace-hopper", plt.imread(os.path.join(mpl_data, "grace_hopper.jpg")))
    faces = data.lfw_subset()[:16]  # 16 faces of 25 x 25, as a 4 x 4 mosaic
    save("photo", "faces-mosaic", np.block([[faces[4 * r + c] for c in range(4)] for r in range(4)]))
    # Textures and astronomy.
    save("texture", "brick", data.brick())
    save("texture", "grass", data.grass())
    save("texture", "gravel", data.gravel())
    save("astronomy", "moon", data.moon())
    both("astronomy", "hubble-deep-field", data.hubble_deep_field())
    # Documents, charts and logos.
    save("document", "page", data.page())
    save("document", "text", data.text())
    fig = plt.figure(figsize=(6, 8), dpi=80)
    fig.text(0.08, 0.95, "Discharge summary", fontsize=16, weight="bold", va="top")
    body = ("The patient was admitted with a cough and a fever of three days. Auscultation found\n"
            "crackles over the right lower lobe. Oxygen saturation was 94% on room air. Treatment\n"
            "with oral antibiotics was started and the symptoms improved within 48 hours.\n\n") * 5
    fig.text(0.08, 0.88, body, fontsize=8, va="top", family="serif")
    fig.savefig(os.path.join(out, "_doc.png"))
    plt.close(fig)
    save("document", "discharge-letter", gray(plt.imread(os.path.join(out, "_doc.png")) * 255))
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=80)
    x = np.linspace(0, 10, 200)
    ax.plot(x, np.sin(x), label="sin")
    ax.plot(x, np.cos(x), label="cos")
    ax.legend()
    ax.set_title("A chart")
    fig.savefig(os.path.join(out, "_chart.png"))
    plt.close(fig)
    both("document", "line-chart", (plt.imread(os.path.join(out, "_chart.png"))[..., :3] * 255).round().astype(np.uint8))
    save("document", "logo", data.logo())
    # Microscopy and other medical images.
    save("microscopy", "cell", data.cell())
    both("microscopy", "immunohistochemistry", data.immunohistochemistry())
    save("medical", "retina-microaneurysms", data.microaneurysms())
    both("medical", "retina-fundus", data.retina())
    save("medical", "ct-phantom", data.shepp_logan_phantom())
    with gzip.open(os.path.join(mpl_data, "s1045.ima.gz")) as f:
        mri = np.frombuffer(f.read(), np.uint16).reshape(256, 256)
    save("medical", "mri-brain", mri)
    for name, key in (("topobathy.npz", "topo"), ("jacksboro_fault_dem.npz", "elevation")):
        with np.load(os.path.join(mpl_data, name)) as z:
            save("terrain", name.split(".")[0].replace("_", "-"), z[key])
    # Generated: blank, noise, gradients, patterns.
    rng = np.random.default_rng(20261207)
    n = 256
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1)
    save("generated", "white", np.full((n, n), 255, np.uint8))
    save("generated", "black", np.zeros((n, n), np.uint8))
    save("generated", "mid-gray", np.full((n, n), 128, np.uint8))
    save("generated", "white-colour", np.full((n, n, 3), 255, np.uint8))
    save("generated", "uniform-noise", rng.integers(0, 256, (n, n), dtype=np.uint8))
    save("generated", "gaussian-noise", np.clip(rng.normal(128, 40, (n, n)), 0, 255).astype(np.uint8))
    save("generated", "colour-noise", rng.integers(0, 256, (n, n, 3), dtype=np.uint8))
    smooth = rng.normal(0, 1, (16, 16))
    clouds = np.kron(smooth, np.ones((16, 16)))
    from scipy.ndimage import gaussian_filter
    save("generated", "clouds", gaussian_filter(clouds, 8))
    save("generated", "gradient-horizontal", xx)
    save("generated", "gradient-vertical", yy)
    save("generated", "gradient-radial", np.hypot(xx - 0.5, yy - 0.5))
    save("generated", "stripes", np.sin(xx * 40) > 0)
    save("generated", "checkerboard", data.checkerboard())
    save("generated", "rings", np.sin(np.hypot(xx - 0.5, yy - 0.5) * 60))
    save("generated", "colour-wheel", data.colorwheel())
    boxes = np.zeros((n, n))
    for _ in range(12):
        y0, x0 = rng.integers(0, n - 40, 2)
        boxes[y0:y0 + rng.integers(10, 80), x0:x0 + rng.integers(10, 80)] = rng.random()
    save("generated", "rectangles", boxes)
    save("generated", "colour-gradient", np.stack([xx, yy, 1 - xx], -1))
    for f in ("_doc.png", "_chart.png"):
        os.remove(os.path.join(out, f))
    return images


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", help="folder for the images (default: a temporary one)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    ensure_packages(os.path.abspath(args.build))
    out = args.out or tempfile.mkdtemp(prefix="nn_ood_set.")
    images = build_set(out)
    cmd = [os.path.join(args.build, "bin", "pneumonia-predict"), "--model", args.model, "--json"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    run = subprocess.run(cmd + sorted(images), capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit("pneumonia-predict failed (%d): %s" % (run.returncode, run.stderr))
    answers = json.loads(run.stdout)
    per = {}
    rows = []
    for a in answers:
        cat = images[a["path"]]
        refused = a["label"] == "REJECTED"
        per.setdefault(cat, [0, 0])
        per[cat][0] += refused
        per[cat][1] += 1
        rows.append({"image": os.path.relpath(a["path"], out), "category": cat, "label": a["label"],
                     "reason": a.get("reason"), "probability": a.get("probability"), "ood_score": a.get("ood_score")})
    total_refused = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    for r in rows:
        what = r["reason"] if r["label"] == "REJECTED" else "%s %.3f (ood score %.2f)" % (
            r["label"], r["probability"], r["ood_score"] if r["ood_score"] is not None else float("nan"))
        print("%-9s %-42s %s" % ("refused" if r["label"] == "REJECTED" else "ANSWERED", r["image"], what))
    print()
    for cat, (k, m) in sorted(per.items()):
        print("%-12s %2d of %2d refused" % (cat, k, m))
    print("all          %d of %d refused (%.1f%%; target >= 95%%)" % (total_refused, total, 100.0 * total_refused / total))
    result = {"model": args.model, "refused": total_refused, "images": total,
              "refused_fraction": total_refused / total, "per_category": per, "answers": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
