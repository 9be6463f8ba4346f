"""Text the REST API accepts: what PostgreSQL can store (no NUL, valid UTF-8). Shared by the API's routers."""

from typing import Annotated

from pydantic import AfterValidator


def storable(v: str) -> str:
    """Text that PostgreSQL can store: no NUL, valid UTF-8 (no lone surrogates); ValueError saying why not."""
    if "\x00" in v:
        raise ValueError("text must not contain NUL characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return v


Text = Annotated[str, AfterValidator(storable)]
