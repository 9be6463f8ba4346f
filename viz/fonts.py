"""Fonts with Chinese glyphs on this machine, for the pictures the server draws (pyvista snapshots in
:mod:`viz.render`, the scene's first frame in :mod:`viz.poster`)."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

# Where Debian/Ubuntu/Fedora packages put CJK fonts (fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk).
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


@cache
def find_cjk_font() -> Path | None:
    """A font file with Chinese glyphs: known package paths first, then fontconfig's ``fc-list``."""
    for p in CJK_FONT_CANDIDATES:
        if Path(p).is_file():
            return Path(p)
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    try:
        out = subprocess.run([fc_list, ":lang=zh", "file"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    # VTK's FreeType reader takes .ttf/.ttc/.otf (first face of a collection, which has the Han glyphs).
    usable = [f for f in files if f.lower().endswith((".ttf", ".ttc", ".otf"))]
    return Path(usable[0]) if usable else None
