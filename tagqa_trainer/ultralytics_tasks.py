"""Ultralytics work that runs in a child process: ONNX export, PyTorch predictions for the parity check,
and Ultralytics' own ``val()`` (the reference the platform's evaluation is checked against).

Importing Ultralytics changes the importing process for good (it patches ``PIL.Image.open``
and ``cv2.imread``, configures logging, reads its settings directory once), so the Dagster
process never imports it: training, export and PyTorch inference all happen in children.

    python -m tagqa_trainer.ultralytics_tasks export WEIGHTS IMGSZ OUT_DIR [--opset N]
    python -m tagqa_trainer.ultralytics_tasks predict WEIGHTS IMGSZ PIXELS.npz OUT.npz --conf C --iou I --max-det M
    python -m tagqa_trainer.ultralytics_tasks val MODEL DATA.yaml IMGSZ OUT.json --split S --conf C --iou I --max-det M

All take ``--settings-dir`` (Ultralytics' settings folder). ``export`` writes
``OUT_DIR/model.onnx`` and ``OUT_DIR/export.json``; ``predict`` reads decoded RGB images
from an ``.npz`` (one array per image name) and writes per image ``<name>/boxes``,
``/scores``, ``/classes`` (original pixels) and ``/raw`` (the model's raw output); ``val`` runs
``YOLO(MODEL).val()`` (a ``.pt`` or an exported ``.onnx``) on one split of a YOLO dataset and
writes its ``map50``, ``map50_95``, ``precision``, ``recall`` and per-class AP as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from tagqa_trainer.offline import NetworkGuard, configure_settings, prepare_environment

ONNX_FILE = "model.onnx"
EXPORT_RECORD = "export.json"


def run_task(args: list[str], *, settings_dir: Path, cwd: Path, timeout: float = 1800) -> None:
    """Run one task in a child process; raises ``RuntimeError`` with its last output when it fails."""
    cwd.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tagqa_trainer.ultralytics_tasks", *args, "--settings-dir", str(settings_dir)]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, errors="replace", timeout=timeout)
    if done.returncode != 0:
        tail = deque((done.stdout + done.stderr).splitlines(), maxlen=25)
        raise RuntimeError(f"ultralytics task {args[0]} failed (exit {done.returncode}):\n" + "\n".join(tail))


def export(weights: Path, imgsz: int, out_dir: Path, opset: int | None) -> dict:
    """Export ``weights`` to ``out_dir/model.onnx`` (static 1x3ximgszximgsz, simplified, fp32)."""
    from ultralytics import YOLO

    out_dir.mkdir(parents=True, exist_ok=True)
    # Ultralytics writes the .onnx beside the checkpoint: export a private copy.
    source = Path(shutil.copyfile(weights, out_dir / "export-source.pt"))
    started = time.monotonic()
    exported = YOLO(str(source)).export(format="onnx", imgsz=imgsz, dynamic=False, simplify=True, batch=1,
                                        device="cpu", half=False, opset=opset, verbose=False)
    record = {"seconds": round(time.monotonic() - started, 2)}
    shutil.move(str(exported), out_dir / ONNX_FILE)
    source.unlink()
    (out_dir / EXPORT_RECORD).write_text(json.dumps(record))
    return record


def predict(weights: Path, imgsz: int, pixels_file: Path, out_file: Path, *, conf: float, iou: float, max_det: int) -> None:
    """Ultralytics' own pipeline per image: ``LetterBox`` -> fused model -> ``non_max_suppression`` -> ``scale_boxes``."""
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    model, _ = load_checkpoint(str(weights), device="cpu", fuse=True)
    model = model.float().eval()
    letterbox = LetterBox((imgsz, imgsz), auto=False, stride=32)
    results: dict[str, np.ndarray] = {}
    with np.load(pixels_file) as images, torch.inference_mode():
        for name in images.files:
            pixels = images[name]
            boxed = letterbox(image=np.ascontiguousarray(pixels[..., ::-1]))  # Ultralytics works in BGR
            tensor = torch.from_numpy(np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))).float().div(255)[None]
            output = model(tensor)
            raw = output[0] if isinstance(output, (list, tuple)) else output
            kept = non_max_suppression(raw, conf, iou, max_det=max_det, max_time_img=60.0)[0]
            boxes = scale_boxes((imgsz, imgsz), kept[:, :4].clone(), pixels.shape[:2])
            order = torch.argsort(-kept[:, 4], stable=True)
            results[f"{name}/boxes"] = boxes[order].numpy().astype(np.float32)
            results[f"{name}/scores"] = kept[order, 4].numpy().astype(np.float32)
            results[f"{name}/classes"] = kept[order, 5].numpy().astype(np.int64)
            results[f"{name}/raw"] = raw.numpy()
    np.savez(out_file, **results)


def validate(model_file: Path, data_yaml: Path, imgsz: int, out_file: Path, *, split: str, conf: float, iou: float,
             max_det: int) -> dict:
    """Ultralytics' ``val()`` on ``split``, batch 1 on the CPU, without plots; its headline metrics as JSON."""
    from ultralytics import YOLO

    metrics = YOLO(str(model_file), task="detect").val(
        data=str(data_yaml), split=split, imgsz=imgsz, batch=1, conf=conf, iou=iou, max_det=max_det, device="cpu",
        plots=False, save_json=False, verbose=False, workers=0)
    box = metrics.box
    result = {
        "map50": float(box.map50), "map50_95": float(box.map), "precision": float(box.mp), "recall": float(box.mr),
        "per_class": {str(int(c)): {"ap50": float(box.ap50[i]), "ap50_95": float(box.ap[i])}
                      for i, c in enumerate(box.ap_class_index)},
    }
    out_file.write_text(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one task (see module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tagqa_trainer.ultralytics_tasks")
    tasks = parser.add_subparsers(dest="task", required=True)
    exporting = tasks.add_parser("export")
    exporting.add_argument("weights", type=Path)
    exporting.add_argument("imgsz", type=int)
    exporting.add_argument("out_dir", type=Path)
    exporting.add_argument("--opset", type=int, default=0)
    predicting = tasks.add_parser("predict")
    predicting.add_argument("weights", type=Path)
    predicting.add_argument("imgsz", type=int)
    predicting.add_argument("pixels", type=Path)
    predicting.add_argument("out", type=Path)
    validating = tasks.add_parser("val")
    validating.add_argument("model", type=Path)
    validating.add_argument("data", type=Path)
    validating.add_argument("imgsz", type=int)
    validating.add_argument("out", type=Path)
    validating.add_argument("--split", default="test")
    for task in (predicting, validating):
        task.add_argument("--conf", type=float, required=True)
        task.add_argument("--iou", type=float, required=True)
        task.add_argument("--max-det", type=int, required=True)
    for task in (exporting, predicting, validating):
        task.add_argument("--settings-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    guard = NetworkGuard()
    prepare_environment(args.settings_dir)
    guard.enabled = True
    configure_settings(runs_dir=Path.cwd() / "runs")
    if args.task == "export":
        export(args.weights, args.imgsz, args.out_dir, args.opset or None)
    elif args.task == "val":
        validate(args.model, args.data, args.imgsz, args.out, split=args.split, conf=args.conf, iou=args.iou,
                 max_det=args.max_det)
    else:
        predict(args.weights, args.imgsz, args.pixels, args.out, conf=args.conf, iou=args.iou, max_det=args.max_det)
    if guard.attempts:
        print(f"refused network access: {guard.attempts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
