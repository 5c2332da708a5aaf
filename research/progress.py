"""A small progress bar for long work: count, ETA, items/s and named values.

On a terminal it redraws one line; when output is a file or a pipe (CI logs) it
prints a full line at most every `min_interval` seconds, so logs stay readable.
"""
import sys
import time


def format_seconds(seconds):
    """Formats a duration as H:MM:SS or M:SS."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """Progress over `total` steps of `items_per_step` items each (e.g. images).

    Example:
      bar = ProgressBar(total=100, items_per_step=8, desc="epoch 1/25", unit="img")
      for step in range(100):
          ...
          bar.update(1, loss=0.52, miou=0.31)
      bar.close()
    """

    def __init__(self, total, items_per_step=1, desc="", unit="it", stream=None,
                 min_interval=None, width=24, initial=0):
        self.total = total
        self.items_per_step = items_per_step
        self.desc = desc
        self.unit = unit
        self.stream = stream or sys.stderr
        self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval if min_interval is not None else (0.2 if self.is_tty else 10.0)
        self.width = width
        self.initial = initial  # steps done before this bar started (a resumed epoch)
        self.count = initial
        self.values = {}
        self.start = time.perf_counter()
        self._last_draw = -float("inf")

    @property
    def elapsed(self):
        """Seconds since the bar started."""
        return time.perf_counter() - self.start

    @property
    def items_per_second(self):
        """Items (images) per second since the bar started; 0 before any time passed."""
        elapsed = self.elapsed
        return (self.count - self.initial) * self.items_per_step / elapsed if elapsed > 0 else 0.0

    def update(self, steps=1, **values):
        """Advances by `steps` and records the named values shown after the rate."""
        self.count += steps
        self.values.update(values)
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval:
            self._draw(final=False)
            self._last_draw = now

    def line(self):
        """The current progress line as a string."""
        parts = [self.desc] if self.desc else []
        if self.total:
            done = min(1.0, self.count / self.total)
            filled = int(done * self.width)
            bar = "=" * filled + (">" if filled < self.width else "") + " " * (self.width - filled - 1)
            parts.append(f"[{bar[:self.width]}] {self.count}/{self.total}")
            rate = (self.count - self.initial) / self.elapsed if self.elapsed > 0 else 0.0
            remaining = (self.total - self.count) / rate if rate > 0 else float("nan")
            eta = format_seconds(remaining) if remaining == remaining else "?"
            parts.append(f"ETA {eta}" if self.count < self.total else f"in {format_seconds(self.elapsed)}")
        else:
            parts.append(f"{self.count} in {format_seconds(self.elapsed)}")
        parts.append(f"{self.items_per_second:.1f} {self.unit}/s")
        for key, value in self.values.items():
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        return " | ".join(parts)

    def _draw(self, final):
        text = self.line()
        if self.is_tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        """Draws the final line, so logs always end with the totals."""
        self._draw(final=True)
