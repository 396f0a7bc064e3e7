#!/usr/bin/python3
"""Tests of bin/agipd-preview (include/agipd_preview.h): the PNG decodes, has
the size it says, shows the data (varied colours), the mask (grey exactly
where masked), the gain stages and the AGIPD1M quadrant layout as
documented; the frame options change the picture as they should; bad input
fails clearly with a non-zero exit and leaves no file behind.

Most tests write small CORR files of their own with h5py, so that every
value, mask bit and gain stage is known; one runs agipd-simulate and
agipd-correct first.  Set AGIPD_KEEP=1 to keep the folders (and pictures).
"""
import glob
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PREVIEW = os.path.join(harness.BIN, "agipd-preview")
ROWS, COLS = 512, 128
KID = "SPB_DET_AGIPD1M-1"
MASKED = (0x9a, 0x9a, 0x9a)        # AGIPD_PREVIEW_MASKED
WHITE = (255, 255, 255)            # AGIPD_PREVIEW_BACKGROUND
GAIN_RGB = [(0x00, 0x72, 0xb2), (0xf0, 0xe4, 0x42), (0xd5, 0x5e, 0x00)]


def check(cond, msg):
    if not cond:
        raise harness.Failed(msg)


def tmpdir():
    d = harness.tmpdir("agipd-preview-")
    return d


def need_preview():
    if not os.access(PREVIEW, os.X_OK):
        raise harness.Skip("bin/agipd-preview not built")


def read_png(path):
    """(h, w, 3) uint8 array."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            check(im.format == "PNG", f"{path}: not a PNG ({im.format})")
            return np.asarray(im.convert("RGB")).copy()
    except ImportError:
        import matplotlib.image as mpimg
        a = mpimg.imread(path)
        check(a.ndim == 3 and a.shape[2] in (3, 4), f"{path}: unexpected PNG shape {a.shape}")
        return np.round(a[:, :, :3] * 255).astype(np.uint8)


def write_corr(folder, module, data, run=1, seq=0, trains=None, cells=None, mask=None, gain=None,
               kid=KID, skip=()):
    """A CORR file as agipd-correct writes it (SPEC section 5), the parts the
    preview reads.  data: (n, 512, 128)."""
    n = data.shape[0]
    trains = np.asarray(trains if trains is not None else [10000 + i // 4 for i in range(n)], np.uint64)
    cells = np.asarray(cells if cells is not None else [i % 4 for i in range(n)], np.uint16)
    mask = mask if mask is not None else np.zeros(data.shape, np.uint32)
    gain = gain if gain is not None else np.zeros(data.shape, np.uint8)
    path = os.path.join(folder, f"CORR-R{run:04d}-AGIPD{module:02d}-S{seq:05d}.h5")
    src = f"INSTRUMENT/{kid}/DET/{module}CH0:xtdf/image"
    with h5py.File(path, "w") as f:
        for name, arr in (("data", data), ("mask", mask.astype(np.uint32)), ("gain", gain.astype(np.uint8)),
                          ("trainId", trains), ("cellId", cells),
                          ("pulseId", np.arange(n, dtype=np.uint64))):
            if name not in skip:
                f.create_dataset(f"{src}/{name}", data=arr, chunks=(1,) + arr.shape[1:] if arr.ndim == 3 else None)
        f["INDEX/trainId"] = np.unique(trains)
    return path


def gradient(n=1, offset=0.0, step=10.0):
    """Frame i: value = row + offset + step * i (varies along slow-scan)."""
    base = np.broadcast_to(np.arange(ROWS, dtype=np.float32)[:, None], (ROWS, COLS))
    return np.stack([base + offset + step * i for i in range(n)]).astype(np.float32)


GEOM_RE = re.compile(r"geometry: data image at (\d+),(\d+), gain image at (\d+),(\d+), each (\d+) x (\d+); "
                     r"bin (\d+), scale (\d+)")
WROTE_RE = re.compile(r"wrote (\S+) \((\d+) x (\d+)\)")
LIMITS_RE = re.compile(r"colour limits (\S+) \.\. (\S+)")


def preview(folder, *args, check_rc=True):
    """Run agipd-preview -v; returns (CompletedProcess, info dict or None)."""
    need_preview()
    p = harness.run([PREVIEW, "--out-folder", folder, "-v"] + [str(a) for a in args], timeout=60,
                    check=check_rc)
    if p.returncode != 0:
        return p, None
    w, g, lim = WROTE_RE.search(p.stdout), GEOM_RE.search(p.stdout), LIMITS_RE.search(p.stdout)
    check(w and g and lim, f"unexpected output:\n{p.stdout}")
    info = {"path": w.group(1), "width": int(w.group(2)), "height": int(w.group(3)),
            "data": (int(g.group(1)), int(g.group(2))), "gain": (int(g.group(3)), int(g.group(4))),
            "image": (int(g.group(5)), int(g.group(6))), "bin": int(g.group(7)), "scale": int(g.group(8)),
            "lo": float(lim.group(1)), "hi": float(lim.group(2))}
    info["png"] = read_png(info["path"])
    check(info["png"].shape == (info["height"], info["width"], 3),
          f"PNG is {info['png'].shape}, the program said {info['width']} x {info['height']}")
    return p, info


def panel(info, which="data"):
    x, y = info[which]
    w, h = info["image"]
    return info["png"][y:y + h, x:x + w]


def colours(a):
    return {tuple(c) for c in a.reshape(-1, 3)}


def count(a, rgb):
    return int(np.all(a == np.array(rgb, np.uint8), axis=-1).sum())


# ---------------------------------------------------------------------------
# Single module
# ---------------------------------------------------------------------------

def single_module_folder():
    d = tmpdir()
    data = gradient(4)
    mask = np.zeros(data.shape, np.uint32)
    gain = np.zeros(data.shape, np.uint8)
    mask[:, 200:210, 30:40] = 1 << 17          # NOISY_ADC
    data[:, 200:210, 30:40] = 1e6              # would saturate the colours if not masked
    gain[:, 300:310, 60:70] = 1
    gain[:, 400:402, 100:102] = 2
    write_corr(d, 3, data, mask=mask, gain=gain)
    return d


def test_single_module_picture():
    d = single_module_folder()
    _, info = preview(d, "--module", 3)
    check(info["path"] == os.path.join(d, "preview.png"), f"default output is {info['path']}")
    check(info["width"] <= 1600, f"picture {info['width']} wide, more than the default 1600")
    s = info["scale"]
    check(info["bin"] == 1 and info["image"] == (512 * s, 128 * s),
          f"single module image {info['image']} at bin {info['bin']}, scale {s}")
    dp = panel(info)
    # Not blank: the slow-scan gradient gives many colours, varying along x.
    check(len(colours(dp)) > 100, f"data panel has only {len(colours(dp))} colours")
    check(not np.array_equal(dp[:, 10], dp[:, -10]), "data panel does not vary along slow-scan")
    # The masked block (rows 200-209, columns 30-39), and nothing else, is grey.
    blk = dp[30 * s:40 * s, 200 * s:210 * s]
    check(count(blk, MASKED) == blk.shape[0] * blk.shape[1], "masked block not drawn in the mask colour")
    check(count(dp, MASKED) == (10 * s) ** 2, f"{count(dp, MASKED)} grey pixels, expected {(10 * s) ** 2}")
    # Colour limits ignore the masked 1e6 values: 0.5-99.5 % of 0..511.
    check(0 <= info["lo"] < 10 and 500 < info["hi"] <= 511, f"limits {info['lo']} .. {info['hi']}")
    # Gain panel: medium block, low block, high elsewhere.
    gp = panel(info, "gain")
    check(count(gp[60 * s:70 * s, 300 * s:310 * s], GAIN_RGB[1]) == (10 * s) ** 2, "medium-gain block")
    check(count(gp[100 * s:102 * s, 400 * s:402 * s], GAIN_RGB[2]) == (2 * s) ** 2, "low-gain block")
    check(count(gp, GAIN_RGB[0]) == gp.shape[0] * gp.shape[1] - (100 + 4) * s * s, "high-gain area")
    # Legend and colour bar beside the data: viridis ends appear right of the image.
    right = info["png"][info["data"][1]:info["data"][1] + info["image"][1], info["data"][0] + info["image"][0]:]
    check(count(right, (0xfd, 0xe7, 0x25)) > 0 and count(right, (0x44, 0x01, 0x54)) > 0,
          "no colour bar right of the data image")
    # The gain legend shows all three stage colours right of the gain image.
    gx, gy = info["gain"]
    gright = info["png"][gy:gy + info["image"][1], gx + info["image"][0]:]
    for g, rgb in enumerate(GAIN_RGB):
        check(count(gright, rgb) > 50, f"gain legend lacks stage {g}")


def test_max_width():
    d = single_module_folder()
    _, info = preview(d, "--module", 3, "--max-width", 700, "--output", os.path.join(d, "small.png"))
    check(info["width"] <= 700, f"{info['width']} wide with --max-width 700")
    check(info["image"][0] == 512 * info["scale"] // info["bin"], f"image {info['image']}")


# ---------------------------------------------------------------------------
# 16 modules
# ---------------------------------------------------------------------------

def tile_origin(module, b):
    """Documented layout (agipd_preview.h), mosaic pixels at bin b."""
    tw, th, mg, qg = 512 // b, 128 // b, 8 // b, 24 // b
    qh = 4 * th + 3 * mg
    q, k = divmod(module, 4)
    x = tw + qg if q < 2 else 0
    y = (0 if q in (0, 3) else qh + qg) + k * (th + mg)
    return x, y


def module_to_picture(info, module, r, c):
    """Picture (x, y) of module pixel [r][c] in the 16-module data image."""
    b, s = info["bin"], info["scale"]
    tx, ty = tile_origin(module, b)
    tw, th = 512 // b, 128 // b
    if module < 8:      # right half: slow-scan towards the beam (leftwards), fast-scan down
        x, y = tx + (tw - 1 - r // b), ty + c // b
    else:               # left half: slow-scan rightwards, fast-scan up
        x, y = tx + r // b, ty + (th - 1 - c // b)
    return info["data"][0] + x * s, info["data"][1] + y * s


def test_quadrant_picture():
    d = tmpdir()
    missing = (6, 11)
    for m in range(16):
        if m in missing:
            continue
        data = gradient(2, offset=100 * m)
        mask = np.zeros(data.shape, np.uint32)
        mask[:, 32:48, 16:32] = 1          # 16 x 16: whole bins at any bin <= 8
        gain = np.zeros(data.shape, np.uint8)
        gain[:, 64:96, 64:96] = m % 3
        write_corr(d, m, data, mask=mask, gain=gain)
    p, info = preview(d)
    check("14 module(s)" in p.stdout, p.stdout)
    check(info["width"] <= 2000, f"16-module picture {info['width']} px wide")
    b, s = info["bin"], info["scale"]
    check(b >= 2, f"16 modules at bin {b}: not down-sampled")
    check(info["image"] == (1048 // b * s, 1096 // b * s) or info["image"] == ((2 * (512 // b) + 24 // b) * s,
                                                                           (2 * (4 * (128 // b) + 3 * (8 // b)) + 24 // b) * s),
          f"image {info['image']} at bin {b}, scale {s}")
    dp = panel(info)
    check(len(colours(dp)) > 50, "data panel nearly uniform")
    for m in range(16):
        # centre of each tile: data (viridis), or white when missing
        x, y = module_to_picture(info, m, 256, 100)
        px = tuple(info["png"][y, x])
        if m in missing:
            check(px == WHITE, f"missing module {m}: centre is {px}, not background")
        else:
            check(px not in (WHITE, MASKED), f"module {m}: centre {px} is not data")
        # the masked 16 x 16 block is grey, wherever the layout puts it
        x0, y0 = module_to_picture(info, m, 40, 24)
        px = tuple(info["png"][y0, x0])
        if m not in missing:
            check(px == MASKED, f"module {m}: masked block at ({x0}, {y0}) is {px}")
        # gain block in the gain panel
        gx = x0 - info["data"][0] + info["gain"][0]
        gy = y0 - info["data"][1] + info["gain"][1]
        x1, y1 = module_to_picture(info, m, 80, 80)
        gx1 = x1 - info["data"][0] + info["gain"][0]
        gy1 = y1 - info["data"][1] + info["gain"][1]
        if m not in missing:
            check(tuple(info["png"][gy1, gx1]) == GAIN_RGB[m % 3], f"module {m}: gain block colour")
            check(tuple(info["png"][gy, gx]) == GAIN_RGB[0], f"module {m}: high gain around the block")
    # Orientation: the slow-scan gradient rises towards the beam (the centre).
    for m in (0, 12):
        xa, ya = module_to_picture(info, m, 20, 60)
        xb, yb = module_to_picture(info, m, 490, 60)
        check(tuple(info["png"][ya, xa]) != tuple(info["png"][yb, xb]), f"module {m}: no gradient")
        centre = info["data"][0] + info["image"][0] // 2
        check(abs(xb - centre) < abs(xa - centre), f"module {m}: row 490 is not nearer the centre than row 20")


def test_quadrant_default_is_one_train_and_cell():
    """Module files with different frame orders: all show the lowest module's
    first (train, cell)."""
    d = tmpdir()
    n = 8
    trains = [10000 + i // 4 for i in range(n)]
    cells = [i % 4 for i in range(n)]
    for m in (0, 1, 9):
        order = list(range(n)) if m == 0 else list(reversed(range(n)))
        data = np.stack([np.full((ROWS, COLS), 50.0 * (trains[i] - 10000) + 10 * cells[i] + (r % 7), np.float32)
                         for r, i in enumerate(order)])
        data[:, :, :64] += np.arange(ROWS, dtype=np.float32)[:, None] / 100   # some variation
        write_corr(d, m, data, trains=[trains[i] for i in order], cells=[cells[i] for i in order])
    p, info = preview(d, "--percentiles", "0:100")
    check("train 10000 cell 0" in p.stdout, p.stdout)
    # every module shows value 0 + r%7 (module 0 frame 0 has r=0 -> 0;
    # the others show the same train/cell found at the end of their files)
    check(info["lo"] >= 0 and info["hi"] < 12, f"limits {info['lo']} .. {info['hi']}: mixed frames")


# ---------------------------------------------------------------------------
# Frame choice
# ---------------------------------------------------------------------------

def frames_folder():
    """Module 2: 3 trains x 4 cells; frame i = row + 10 i; a bright spot at
    a place that depends on i; frame 0's pixel (5, 5) is huge but masked."""
    d = tmpdir()
    n = 12
    data = gradient(n)
    mask = np.zeros(data.shape, np.uint32)
    for i in range(n):
        data[i, 20 + 30 * i:30 + 30 * i, 50:60] += 300
    data[0, 5, 5] = 1e7
    mask[0, 5, 5] = 1 << 12
    write_corr(d, 2, data, mask=mask, trains=[20000 + i // 4 for i in range(n)], cells=[i % 4 for i in range(n)])
    return d


def test_frame_options_change_the_picture():
    d = frames_folder()
    pics = {}
    for name, args in (("default", []), ("frame0", ["--frame", 0]), ("cell2", ["--cell", 2]),
                       ("train1", ["--train", 20001]), ("train1cell3", ["--train", 20001, "--cell", 3]),
                       ("frame7", ["--frame", 7]), ("mean", ["--mean", "0:12"])):
        _, info = preview(d, "--module", 2, "--output", os.path.join(d, name + ".png"), *args)
        pics[name] = panel(info)
    same = lambda a, b: np.array_equal(pics[a], pics[b])  # noqa: E731
    check(same("default", "frame0"), "default is not frame 0")
    check(not same("default", "cell2"), "--cell 2 shows the same picture as the default")
    check(not same("default", "train1"), "--train shows the same picture as the default")
    check(not same("train1", "train1cell3"), "--cell does not narrow --train")
    check(same("train1cell3", "frame7"), "--train 20001 --cell 3 is not frame 7")
    check(not same("mean", "default") and not same("mean", "cell2"), "--mean shows a single frame")


def test_values_mean_and_mask():
    """With --percentiles 0:100 the limits are the min and max shown."""
    d = frames_folder()
    lim = {}
    for name, args in (("f0", []), ("f3", ["--frame", 3]), ("mean", ["--mean", "0:4"]), ("mean_open", ["--mean", "8:"])):
        _, info = preview(d, "--module", 2, "--percentiles", "0:100", "--output", os.path.join(d, name + ".png"),
                          *args)
        lim[name] = (info["lo"], info["hi"])
    # frame 0: rows 0..511 plus the spot (+300 on rows 20-29), the masked 1e7 ignored
    check(lim["f0"] == (0, 511), f"frame 0 limits {lim['f0']}")
    check(lim["f3"] == (30, 541), f"frame 3 limits {lim['f3']}")
    # mean of frames 0-3: row + 15 (+ 75 where one frame had the spot); pixel
    # (5, 5) averages frames 1-3 only (20 + 5 = 25), not 1e7
    check(lim["mean"][0] == 15 and lim["mean"][1] == 526, f"mean limits {lim['mean']}")
    # frames 8-11: row + 95
    check(lim["mean_open"][0] == 95 and lim["mean_open"][1] == 606, f"mean 8: limits {lim['mean_open']}")


def test_sequences_and_runs():
    d = tmpdir()
    write_corr(d, 0, gradient(4), run=1, seq=0, trains=[100, 100, 101, 101], cells=[0, 1, 0, 1])
    write_corr(d, 0, gradient(4, offset=1000), run=1, seq=1, trains=[102, 102, 103, 103], cells=[0, 1, 0, 1])
    write_corr(d, 0, gradient(2, offset=5000), run=2, seq=0, trains=[900, 900], cells=[0, 1])
    p, info = preview(d, "--module", 0, "--percentiles", "0:100")
    check("run 1" in p.stdout and "sequence 0" in p.stdout and info["lo"] == 0, p.stdout)
    p, info = preview(d, "--module", 0, "--train", 103, "--percentiles", "0:100")
    check("sequence 1" in p.stdout and "train 103 cell 0" in p.stdout and info["lo"] == 1020, p.stdout)
    p, info = preview(d, "--module", 0, "--sequence", 1, "--percentiles", "0:100")
    check("train 102 cell 0" in p.stdout and info["lo"] == 1000, p.stdout)
    p, info = preview(d, "--run", 2, "--percentiles", "0:100")
    check("run 2" in p.stdout and info["lo"] == 5000, p.stdout)
    p, _ = preview(d, "--run", 3, check_rc=False)
    check(p.returncode == 1 and "no corrected files of run 3" in p.stderr and "runs found: 1, 2" in p.stderr,
          p.stderr)
    p, _ = preview(d, "--module", 0, "--sequence", 0, "--train", 103, check_rc=False)
    check(p.returncode == 1 and "no frame of train 103" in p.stderr, p.stderr)


def test_other_data_types_and_karabo_id():
    d = tmpdir()
    write_corr(d, 4, gradient(2).astype(np.float16))
    write_corr(d, 5, np.round(gradient(2)).astype(np.int16), kid="MID_DET_AGIPD1M-1")
    _, info = preview(d, "--module", 4, "--percentiles", "0:100")
    check((info["lo"], info["hi"]) == (0, 511), f"float16 limits {info['lo']} .. {info['hi']}")
    _, info = preview(d, "--module", 5, "--percentiles", "0:100")
    check((info["lo"], info["hi"]) == (0, 511), f"int16 limits {info['lo']} .. {info['hi']}")
    p, _ = preview(d, "--module", 5, "--karabo-id", KID, check_rc=False)
    check(p.returncode == 1 and "missing dataset" in p.stderr, p.stderr)
    # Both in the 16-module view, whatever their karabo_id.
    p, info = preview(d)
    check("2 module(s)" in p.stdout, p.stdout)


def test_missing_frame_leaves_module_blank():
    d = tmpdir()
    write_corr(d, 0, gradient(8))
    write_corr(d, 1, gradient(2))                 # has no cell 3
    p, info = preview(d, "--cell", 3)
    check("1 module(s)" in p.stdout and "module 1" in p.stderr and "no frame of cell 3" in p.stderr,
          p.stdout + p.stderr)
    x, y = module_to_picture(info, 1, 256, 64)
    check(tuple(info["png"][y, x]) == WHITE, "module 1 without the frame is not left blank")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def no_leftovers(folder):
    left = glob.glob(os.path.join(folder, "*.tmp.*")) + glob.glob(os.path.join(folder, "*.png"))
    check(not left, f"left behind: {left}")


def test_bad_folders():
    d = tmpdir()
    p, _ = preview(os.path.join(d, "nope"), check_rc=False)
    check(p.returncode == 1 and "cannot open folder" in p.stderr and "nope" in p.stderr, p.stderr)
    p, _ = preview(d, check_rc=False)
    check(p.returncode == 1 and "no corrected files" in p.stderr, p.stderr)
    open(os.path.join(d, "RAW-R0001-AGIPD00-S00000.h5"), "w").close()
    open(os.path.join(d, "CORR-R0001-AGIPD00-S00000.h5.tmp"), "w").close()
    p, _ = preview(d, check_rc=False)
    check(p.returncode == 1 and "no corrected files" in p.stderr, p.stderr)
    no_leftovers(d)


def test_bad_files():
    d = tmpdir()
    bad = os.path.join(d, "CORR-R0001-AGIPD00-S00000.h5")
    with open(bad, "wb") as f:
        f.write(b"this is not HDF5" * 100)
    p, _ = preview(d, check_rc=False)
    check(p.returncode == 1 and bad in p.stderr and "cannot open" in p.stderr, p.stderr)
    no_leftovers(d)
    os.unlink(bad)
    write_corr(d, 0, gradient(2), skip=("mask",))
    p, _ = preview(d, check_rc=False)
    check(p.returncode == 1 and "missing dataset" in p.stderr and "mask" in p.stderr, p.stderr)
    os.unlink(bad)
    write_corr(d, 0, np.zeros((2, 128, 512), np.float32))
    p, _ = preview(d, check_rc=False)
    check(p.returncode == 1 and "must have shape (n, 512, 128)" in p.stderr, p.stderr)
    os.unlink(bad)
    write_corr(d, 0, gradient(2))
    p, _ = preview(d, "--module", 5, check_rc=False)
    check(p.returncode == 1 and "no corrected file of module 5" in p.stderr and "modules found: 0" in p.stderr,
          p.stderr)
    p, _ = preview(d, "--frame", 2, check_rc=False)
    check(p.returncode == 1 and "no frame 2" in p.stderr, p.stderr)
    p, _ = preview(d, "--mean", "2:4", check_rc=False)
    check(p.returncode == 1 and "no frames in 2:4" in p.stderr, p.stderr)
    no_leftovers(d)


def test_bad_output_path():
    d = tmpdir()
    write_corr(d, 0, gradient(1))
    out = os.path.join(d, "no", "such", "dir", "p.png")
    p, _ = preview(d, "--output", out, check_rc=False)
    check(p.returncode == 1 and out in p.stderr, p.stderr)
    no_leftovers(d)
    # A good run replaces an existing picture in one step.
    target = os.path.join(d, "preview.png")
    with open(target, "w") as f:
        f.write("old")
    preview(d)
    check(read_png(target).shape[2] == 3, "preview.png not replaced")
    check(not glob.glob(os.path.join(d, "*.tmp.*")), "temporary file left")


def test_bad_options():
    need_preview()
    d = tmpdir()
    write_corr(d, 0, gradient(1))
    for args, what in ((["--module", "16"], "--module"), (["--mean", "5:2"], "--mean"),
                       (["--mean", "5"], "--mean"), (["--frame", "x"], "--frame"),
                       (["--frame", "-1"], "--frame"), (["--frame", "1", "--mean", "0:2"], "choose one"),
                       (["--cell", "1", "--frame", "0"], "choose one"), (["--percentiles", "50:10"], "--percentiles"),
                       (["--bogus"], "unknown"), (["stray"], "unexpected")):
        p = harness.run([PREVIEW, "--out-folder", d] + args, check=False, timeout=30)
        check(p.returncode == 2 and what in p.stderr, f"{args}: rc {p.returncode}, {p.stderr}")
    p = harness.run([PREVIEW], check=False, timeout=30)
    check(p.returncode == 2 and "--out-folder is required" in p.stderr, p.stderr)
    p = harness.run([PREVIEW, "--help"], check=False, timeout=30)
    check(p.returncode == 0 and "Q1 = modules 0-3" in p.stdout, p.stdout)
    no_leftovers(d)


# ---------------------------------------------------------------------------
# With the real corrector
# ---------------------------------------------------------------------------

def test_after_agipd_correct():
    need_preview()
    if not (os.access(harness.CORRECT, os.X_OK) and os.access(harness.SIMULATE, os.X_OK)):
        raise harness.Skip("agipd-correct or agipd-simulate not built")
    d = tmpdir()
    harness.run([harness.SIMULATE, "--out-folder", d, "--modules", "0,5,13", "--trains", "2", "--cells", "4"],
                timeout=120)
    out = os.path.join(d, "out")
    harness.mpirun(2, [harness.CORRECT, "--in-folder", d, "--out-folder", out, "--run", "1",
                       "--constants-folder", os.path.join(d, "constants")], timeout=120)
    p, info = preview(out)
    check("3 module(s)" in p.stdout and "train" in p.stdout, p.stdout)
    check(info["width"] <= 1600, f"{info['width']} px wide")
    for m in (0, 5, 13):
        x, y = module_to_picture(info, m, 256, 64)
        check(tuple(info["png"][y, x]) != WHITE, f"module {m} not drawn")
    x, y = module_to_picture(info, 7, 256, 64)
    check(tuple(info["png"][y, x]) == WHITE, "module 7 (absent) drawn")
    p, info = preview(out, "--module", 5, "--mean", "0:8", "--output", os.path.join(out, "m5.png"))
    check(len(colours(panel(info))) > 50, "mean picture nearly uniform")
    p, info = preview(out, "--module", 13, "--train", "10001", "--cell", "2", "--output", os.path.join(out, "t.png"))
    check("train 10001 cell 2" in p.stdout, p.stdout)


harness.main(globals())
