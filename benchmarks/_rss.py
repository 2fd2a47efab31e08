"""Peak-RSS probe run in a fresh process: ``python _rss.py <loader> <path>`` prints JSON."""

import json
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _status_mib(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> float:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; return the current RSS."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_mib("VmRSS")


def peak_mib() -> float:
    return _status_mib("VmHWM")


def main() -> None:
    loader, path = sys.argv[1], sys.argv[2]
    import torch

    import dinobench  # noqa: F401 - import cost excluded from the measurement

    if loader.startswith("transformers"):
        import transformers  # noqa: F401
    if loader.startswith("timm"):
        import timm
    baseline = reset_peak()
    if loader == "dinobench":
        model = dinobench.create_backbone(sys.argv[3], weights=path)
    elif loader == "dinobench-hf":
        model = dinobench.create_backbone("hf", weights=path)
    elif loader == "transformers":
        model = transformers.AutoModel.from_pretrained(path)
    elif loader == "timm":
        model = timm.create_model(sys.argv[3], pretrained=False)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    elif loader == "torch-naive":  # build with random init, then torch.load + load_state_dict
        model = dinobench.create_backbone(sys.argv[3])
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        raise SystemExit(f"unknown loader {loader}")
    with torch.inference_mode():  # touch every weight once
        model.forward_features(torch.zeros(1, 3, 32, 32)) if hasattr(model, "forward_features") else model(
            torch.zeros(1, 3, 32, 32))
    params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(json.dumps({"loader": loader, "baseline_mib": baseline, "peak_mib": peak_mib(),
                      "delta_mib": peak_mib() - baseline, "weights_mib": params}))


if __name__ == "__main__":
    main()
