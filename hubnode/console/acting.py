"""The hub's casework as the console uses it: with the acting staff member's pseudonym.

Every pathway body has an optional ``staff`` field (``st-…``, never a name). The console
runs the same actions as the command line (:class:`~hubnode.casework.Casework`) inside
``casework.acting(pseudonym)``, which puts the signed-in staff member's pseudonym on the
bodies those actions append.
"""

from __future__ import annotations

from hubnode.casework import Casework
from hubnode.casework.actions import with_staff

StaffCasework = Casework
"""The console's name for the shared casework (kept for the pages that import it)."""

__all__ = ["StaffCasework", "with_staff"]
