"""Peak device memory during a run, for the report and each book's manifest row."""

from __future__ import annotations


class VramMeter:
    """Peak device memory, from torch and, where the driver is there, from NVML."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_mb: float | None = None
        self.nvml_peak_mb: float | None = None
        self._handle = None
        if not device.startswith("cuda"):
            return
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # no NVML library or no permission: torch's number still stands
            self._handle = None

    def sample(self) -> None:
        if not self.device.startswith("cuda"):
            return
        import torch

        self.peak_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        if self._handle is not None:
            import pynvml

            used = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            self.nvml_peak_mb = round(max(self.nvml_peak_mb or 0.0, used), 1)
