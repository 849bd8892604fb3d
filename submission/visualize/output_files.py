"""The report's file formats (PNG, GIF, matplotlib figures), written atomically through ``submission.files``: a reader,
or a browser opening the report mid-run, never sees half an image."""
import io

import numpy as np
from PIL import Image


from submission.files import atomic_write_bytes as write_bytes, atomic_write_text as write_text  # noqa: F401


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) or (H, W) -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def gif_bytes(frames, frame_ms: int = 200) -> bytes:
    """A looping animated GIF of uint8 (H, W, 3) frames, each shown ``frame_ms`` milliseconds."""
    frames = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    if not frames:
        raise ValueError("an animated GIF needs at least one frame")
    buffer = io.BytesIO()
    # disposal=1 and optimize=False keep one stored frame per traversal step (PIL would merge identical ones).
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=int(frame_ms), loop=0,
                   optimize=False, disposal=1)
    return buffer.getvalue()


def figure_png_bytes(figure, dpi: int = 100) -> bytes:
    """A ``matplotlib.figure.Figure`` -> PNG bytes, rendered by Agg. The plots here build ``Figure`` objects directly,
    never through pyplot, so they touch no global backend state and need no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
