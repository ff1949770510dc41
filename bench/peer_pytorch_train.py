#!/usr/bin/env python3
"""The PyTorch peer of pneumonia-train: the project's default from-scratch recipe in PyTorch.

Trains the same model on the same data folder (DIR/NORMAL, DIR/PNEUMONIA, like the Kermany data
or make-synthetic-xrays' output) with the same preprocessing, augmentation, loss and schedule, in
one process with torch.set_num_threads(N), and reports the time per epoch next to validation
loss, accuracy and AUC, so that the C++ trainer's speed can be compared with PyTorch's on the same
machine and thread count.

    /usr/bin/python3 bench/peer_pytorch_train.py --data DIR [--epochs 10] [--threads 2] \
        [--max-images N] [--json OUT]

Needs torch and torchvision (Debian: python3-torch, python3-torchvision) and PIL; sklearn is used
for the AUC when present (else a Mann-Whitney computation here, the same number).

Images are decoded, converted to grayscale and resized ONCE before any timing (kept in memory as
uint8, like the C++ trainer's cache), so the epoch times measure augmentation + compute, not JPEG
decoding. The training time includes the per-image augmentation (done here on tensors, one image
at a time, as a data loader would) and the optimizer steps; the epoch time adds validation.

The recipe's constants are below, named, to be kept in sync with the C++ trainer
(examples/pneumonia/pneumonia_train.cpp).
"""
import argparse
import json
import math
import os
import sys
import time

# ---- the recipe (keep in sync with pneumonia-train) ----
IMAGE_SIZE = 128                      # images resized (squashed) to IMAGE_SIZE x IMAGE_SIZE
VAL_FRACTION = 0.1                    # stratified validation split
SEED = 0
MEAN = (0.485, 0.456, 0.406)          # torchvision (ImageNet) preprocessing, gray replicated to RGB
STD = (0.229, 0.224, 0.225)
AUG_ROTATION_DEG = 10.0               # random affine: rotation +-10 degrees
AUG_ZOOM = (0.8, 1.2)                 # scale
AUG_SHEAR_RAD = 0.2                   # shear +-0.2 rad (about 11.5 degrees), along x
AUG_TRANSLATE = 0.05                  # fraction of the side, each axis
AUG_BRIGHTNESS = 0.1                  # ColorJitter brightness factor in [0.9, 1.1]
AUG_CONTRAST = 0.1                    # ColorJitter contrast factor in [0.9, 1.1]
AUG_HFLIP = False                     # no horizontal flip (the heart is on one side)
VGG_WIDTH = 0.25                      # VGG16 at width 1/4
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
HIDDEN = 256                          # classifier hidden width
DROPOUT = 0.5
LR = 1e-3                             # Adam
BATCH_SIZE = 32
EPOCHS = 10                           # cosine annealing of the LR over all epochs, stepped per epoch
WEIGHT_DECAY = 0.0
CLASSES = ("NORMAL", "PNEUMONIA")     # label 0, 1 (one logit: P(pneumonia))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder with NORMAL/ and PNEUMONIA/")
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--max-images", type=int, default=0, help="use at most N images (stratified); 0 = all")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = p.parse_args()
    if args.image_size < 32 or args.image_size % 32:
        p.error("--image-size must be a positive multiple of 32")
    if not 0.0 < args.val_fraction < 1.0:
        p.error("--val-fraction must be in (0, 1)")
    if args.epochs < 1 or args.batch_size < 1 or args.threads < 1 or args.max_images < 0:
        p.error("--epochs, --batch-size and --threads must be >= 1, --max-images >= 0")
    return args


# ---- data ----

def list_images(root):
    """(path, label) for every image file under root/NORMAL and root/PNEUMONIA, sorted by name."""
    items = []
    for label, cls in enumerate(CLASSES):
        folder = os.path.join(root, cls)
        if not os.path.isdir(folder):
            sys.exit(f"peer_pytorch_train: {folder} is not a folder (expected {root}/NORMAL and {root}/PNEUMONIA)")
        names = sorted(n for n in os.listdir(folder)
                       if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, n)))
        items += [(os.path.join(folder, n), label) for n in names]
    return items


def stratified_split(labels, fraction, seed, max_images):
    """Indices (train, val): per class a seeded shuffle; --max-images keeps each class's share;
    round(fraction * n_class) of each class (at least 1 when the class has 2+) go to validation."""
    import numpy as np
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    total = len(labels)
    train, val = [], []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        if max_images and max_images < total:
            idx = idx[:max(1, int(round(max_images * len(idx) / total)))] if len(idx) else idx
        n_val = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return sorted(train), sorted(val)


def load_cache(items, size):
    """All images decoded once: grayscale, resized to size x size (bilinear, antialiased), uint8."""
    import torch
    from PIL import Image
    cache = torch.empty((len(items), size, size), dtype=torch.uint8)
    for i, (path, _) in enumerate(items):
        with Image.open(path) as im:
            im = im.convert("L").resize((size, size), Image.BILINEAR)
            cache[i] = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size)
    return cache


# ---- model ----

def make_model(image_size):
    import torch.nn as nn
    layers, c_in = [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            c_out = int(v * VGG_WIDTH)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c_out
    side = image_size // 32
    model = nn.Sequential()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d((side, side))
    model.flatten = nn.Flatten()
    model.classifier = nn.Sequential(
        nn.Linear(c_in * side * side, HIDDEN), nn.ReLU(True), nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(True), nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN, 1))
    for m in model.modules():  # torchvision's VGG initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


# ---- augmentation and preprocessing ----

def make_augment():
    import torchvision.transforms as T
    shear_deg = math.degrees(AUG_SHEAR_RAD)
    ops = [T.RandomAffine(degrees=AUG_ROTATION_DEG, translate=(AUG_TRANSLATE, AUG_TRANSLATE), scale=AUG_ZOOM,
                          shear=(-shear_deg, shear_deg), interpolation=T.InterpolationMode.BILINEAR, fill=0.0),
           T.ColorJitter(brightness=AUG_BRIGHTNESS, contrast=AUG_CONTRAST)]
    if AUG_HFLIP:
        ops.append(T.RandomHorizontalFlip())
    return T.Compose(ops)


def to_input(gray_uint8, augment=None):
    """(B, S, S) uint8 -> (B, 3, S, S) float, augmented per image when given, then normalised."""
    import torch
    x = gray_uint8.float().div_(255.0).unsqueeze(1)  # (B, 1, S, S)
    if augment is not None:
        x = torch.stack([augment(img) for img in x]).clamp_(0.0, 1.0)
    x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


# ---- metrics ----

def auc_score(labels, scores):
    """ROC AUC; sklearn's when installed, else Mann-Whitney U with midranks for ties (same value)."""
    try:
        from sklearn.metrics import roc_auc_score
        return float(roc_auc_score(labels, scores))
    except ImportError:
        pass
    pairs = sorted(zip(scores, labels))
    n_pos = sum(1 for l in labels if l == 1)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        midrank = (i + j) / 2.0 + 1.0
        rank_sum += midrank * sum(1 for k in range(i, j + 1) if pairs[k][1] == 1)
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def main():
    args = parse_args()
    import torch
    import torchvision
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    items = list_images(args.data)
    if not items:
        sys.exit(f"peer_pytorch_train: no images under {args.data}/NORMAL or {args.data}/PNEUMONIA")
    labels_all = [l for _, l in items]
    train_idx, val_idx = stratified_split(labels_all, args.val_fraction, args.seed, args.max_images)
    used = sorted(train_idx + val_idx)
    t0 = time.perf_counter()
    cache = load_cache([items[i] for i in used], args.image_size)
    position = {orig: k for k, orig in enumerate(used)}
    x_train = cache[[position[i] for i in train_idx]]
    x_val = cache[[position[i] for i in val_idx]]
    y_train = torch.tensor([labels_all[i] for i in train_idx], dtype=torch.float32)
    y_val = torch.tensor([labels_all[i] for i in val_idx], dtype=torch.float32)
    load_s = time.perf_counter() - t0
    n_pneu = int(y_train.sum().item())
    n_norm = len(train_idx) - n_pneu
    if n_pneu == 0 or n_norm == 0:
        sys.exit("peer_pytorch_train: the training split needs images of both classes")
    pos_weight = n_norm / n_pneu

    model = make_model(args.image_size)
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight]))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    augment = make_augment()

    recipe = {
        "image_size": args.image_size, "val_fraction": args.val_fraction, "seed": args.seed,
        "max_images": args.max_images, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "optimizer": "adam", "weight_decay": WEIGHT_DECAY, "schedule": "cosine (per epoch)",
        "loss": "bce_with_logits", "pos_weight": pos_weight, "preprocessing": "torchvision",
        "augment": {"rotation_deg": AUG_ROTATION_DEG, "zoom": list(AUG_ZOOM), "shear_rad": AUG_SHEAR_RAD,
                    "translate": AUG_TRANSLATE, "brightness": AUG_BRIGHTNESS, "contrast": AUG_CONTRAST,
                    "hflip": AUG_HFLIP},
        "model": f"vgg16 width {VGG_WIDTH}", "hidden": HIDDEN, "dropout": DROPOUT,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_images": len(train_idx), "val_images": len(val_idx),
        "train_normal": n_norm, "train_pneumonia": n_pneu,
    }
    print(f"peer_pytorch_train: torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{args.threads} threads; {len(train_idx)} train ({n_norm} normal, {n_pneu} pneumonia), "
          f"{len(val_idx)} val; {args.image_size}px; {recipe['parameters']} parameters; "
          f"images cached in {load_s:.1f} s", flush=True)

    epochs = []
    for epoch in range(1, args.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train_idx))
        loss_sum, seen, correct = 0.0, 0, 0
        for b in range(0, len(perm), args.batch_size):
            batch = perm[b:b + args.batch_size]
            x = to_input(x_train[batch], augment)
            y = y_train[batch]
            optimizer.zero_grad(set_to_none=True)
            logits = model(x).squeeze(1)
            loss = criterion(logits, y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
            seen += len(batch)
            correct += int(((logits.detach() > 0).float() == y).sum().item())
        train_s = time.perf_counter() - start
        scheduler.step()

        model.eval()
        val_loss, val_correct, scores = 0.0, 0, []
        with torch.no_grad():
            for b in range(0, len(val_idx), args.batch_size):
                x = to_input(x_val[b:b + args.batch_size])
                y = y_val[b:b + args.batch_size]
                logits = model(x).squeeze(1)
                val_loss += criterion(logits, y).item() * len(y)
                val_correct += int(((logits > 0).float() == y).sum().item())
                scores += torch.sigmoid(logits).tolist()
        n_val = max(1, len(val_idx))
        row = {
            "epoch": epoch, "lr": lr,
            "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "val_loss": val_loss / n_val, "val_accuracy": val_correct / n_val,
            "val_auc": auc_score(y_val.int().tolist(), scores),
            "train_seconds": train_s, "epoch_seconds": time.perf_counter() - start,
            "train_images_per_second": seen / train_s,
        }
        epochs.append(row)
        print(f"epoch {epoch}/{args.epochs}  lr {lr:.2e}  train loss {row['train_loss']:.4f} acc "
              f"{row['train_accuracy']:.3f}  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
              f"auc {row['val_auc']:.3f}  train {train_s:.1f} s ({row['train_images_per_second']:.1f} img/s)  "
              f"epoch {row['epoch_seconds']:.1f} s", flush=True)

    if args.json:
        result = {"recipe": recipe, "epochs": epochs, "threads": args.threads, "torch": torch.__version__,
                  "torchvision": torchvision.__version__, "data": os.path.abspath(args.data),
                  "cache_seconds": load_s}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
