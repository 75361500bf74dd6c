"""Limits shared by every visitor of the page.

They live here, not in app.py, because Streamlit executes app.py afresh on every run of every session: a
semaphore created there is a new one each time and bounds nothing. An imported module exists once per server.
"""

from __future__ import annotations

import os
import threading

#: Pictures decoded and classified at once, across every visitor: a 50 Mpx upload costs up to 350 MB until
#: it is shrunk for display, so one at a time keeps the page under 800 MB
#: however many arrive together; the others wait (small pictures take milliseconds).
DECODE_SLOTS = threading.BoundedSemaphore(max(1, int(os.environ.get("EDGEVISION_UI_DECODES", "1"))))
