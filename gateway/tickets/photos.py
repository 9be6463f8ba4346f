"""Photos of tickets (workers' feedback, the 3D snapshot): what is accepted, checked before it is stored."""

from __future__ import annotations

from dataclasses import dataclass

PHOTO_TYPES = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",),
               "image/webp": (b"RIFF",)}


class PhotoRejected(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Photo:
    content_type: str
    data: bytes


def content_type_of(photo: Photo) -> str:
    """The declared media type without parameters, lower case (``"image/PNG; q=1"`` -> ``"image/png"``)."""
    return photo.content_type.split(";")[0].strip().lower()


def check_photo(photo: Photo, max_bytes: int) -> None:
    """Size and type of an uploaded photo: the declared content type must match the file's magic bytes."""
    ctype = content_type_of(photo)
    if ctype not in PHOTO_TYPES:
        raise PhotoRejected(415, f"photo content type {photo.content_type or '(none)'!r} is not accepted; "
                                 f"send {', '.join(PHOTO_TYPES)}")
    if len(photo.data) > max_bytes:
        raise PhotoRejected(413, f"photo of {len(photo.data)} bytes is larger than the limit of {max_bytes} bytes")
    if not photo.data:
        raise PhotoRejected(400, "the photo is empty")
    if not any(photo.data.startswith(m) for m in PHOTO_TYPES[ctype]) or (
            ctype == "image/webp" and photo.data[8:12] != b"WEBP"):
        raise PhotoRejected(415, f"the photo's bytes are not a {ctype} image")
