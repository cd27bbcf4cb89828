"""Does an execution provider give CPU's answers on the real images? The provider check, over a whole image set.

The runtime checks a provider on the blank frame and the model's verification frames when it
loads a model (``edge_runtime.models.load_verified_model``). This script loads the model the same
way, with the same provider list and cache folder, then runs every image of the set through the
runtime's own decode and letterbox on the chosen provider and on CPU, and reports:

- which provider the list chose and why each one before it was refused;
- the largest class-score difference and the smallest IoU of the top candidates (the quantities
  the load-time check bounds: ``edge_runtime.providers.compare_outputs``), and how many images
  would fail the default check;
- after the runtime's NMS (confidence ``--conf``, default the runtime's 0.25; IoU 0.7): CPU's detections in all, images whose
  detections differ in number, and the smallest IoU between a CPU detection and its counterpart.

    python benchmarks/provider_agreement.py --model DIR --providers '["CUDAExecutionProvider", "CPUExecutionProvider"]'

The last line is ``RESULT model=... precision=... chosen=... refused=... images=N max_score_gap=X
min_candidate_iou=X images_failing_check=N conf=X cpu_detections=N detections_differ=N min_detection_iou=X``. It measures
agreement, not speed (benchmarks/edge_inference.py measures speed). Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_runtime.device_config import CPU_PROVIDER, ProviderSpec, parse_providers, provider_list_text  # noqa: E402
from edge_runtime.imaging import decode_image  # noqa: E402
from edge_runtime.letterbox import letterbox  # noqa: E402
from edge_runtime.models import LoadedModel, load_verified_model  # noqa: E402
from edge_runtime.providers import OnnxRuntimeSessions, ProviderCheck, compare_outputs, output_gap  # noqa: E402
from edge_runtime.yolo_decode import decode_predictions  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "metal-tags"


def detection_agreement(reference: np.ndarray, candidate: np.ndarray, conf: float) -> tuple[int, bool, float]:
    """(CPU's detections after NMS, whether the provider has as many, the smallest IoU of a CPU detection with its
    best counterpart; 1.0 when there are none)."""
    ref = decode_predictions(reference, conf, 0.7, 300)
    cand = decode_predictions(candidate, conf, 0.7, 300)
    if len(ref.scores) != len(cand.scores):
        return len(ref.scores), False, 0.0
    worst = 1.0
    for box in ref.boxes_xyxy:
        worst = min(worst, max(_xyxy_iou(box, other) for other in cand.boxes_xyxy))
    return len(ref.scores), True, worst


def _xyxy_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model directory (model.onnx + model_card.json)")
    parser.add_argument("--providers", required=True,
                        help="the device's provider list: JSON (names and options) or comma-separated names")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with images/<split>/<file>")
    parser.add_argument("--conf", type=float, default=0.25,
                        help="confidence threshold of the detections compared (the runtime's default: 0.25)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    args = parser.parse_args(argv)
    specs = parse_providers(provider_list_text(args.providers), "--providers")
    images = sorted(p for p in (args.data / "images").glob("*/*") if p.is_file())
    if args.limit:
        images = images[:args.limit]
    if not images:
        sys.exit(f"no images under {args.data / 'images'}")
    with tempfile.TemporaryDirectory(prefix="provider-cache-") as cache:
        sessions = OnnxRuntimeSessions(cache)
        chosen = load_verified_model(args.model, providers=specs, sessions=sessions)
        for name, why in chosen.provider_refusals:
            print(f"refused {name}: {why}")
        print(f"chosen: {chosen.provider} (session providers {chosen.session.get_providers()})")
        cpu: LoadedModel = load_verified_model(args.model, providers=(ProviderSpec(CPU_PROVIDER),), sessions=sessions)
        check = ProviderCheck()
        gaps, ious, failing, differ, detection_ious, detections = [], [], 0, 0, [], 0
        for path in images:
            tensor = letterbox(decode_image(path.read_bytes()), cpu.input_height, cpu.input_width)[0]
            reference, candidate = cpu.infer(tensor), chosen.infer(tensor)
            gap = output_gap(reference, candidate)
            gaps.append(gap.score_gap)
            ious.append(gap.worst_iou)
            failing += compare_outputs(reference, candidate, check) is not None
            found, same_count, worst = detection_agreement(reference, candidate, args.conf)
            detections += found
            differ += not same_count
            if same_count:
                detection_ious.append(worst)
    refused = ",".join(name for name, _ in chosen.provider_refusals) or "none"
    print(f"images: {len(images)}; score gap median {np.median(gaps):.2e} max {max(gaps):.2e}; "
          f"candidate IoU min {min(ious):.4f} (5th percentile {np.percentile(ious, 5):.4f})")
    print(f"RESULT model={chosen.card.model_id} precision={chosen.precision} chosen={chosen.provider} "
          f"refused={refused} images={len(images)} max_score_gap={max(gaps):.2e} "
          f"min_candidate_iou={min(ious):.4f} images_failing_check={failing} conf={args.conf:g} cpu_detections={detections} "
          f"detections_differ={differ} min_detection_iou={min(detection_ious, default=1.0):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
