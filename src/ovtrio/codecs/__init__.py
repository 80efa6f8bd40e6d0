"""Wire codecs: pure translations between transport payloads and :mod:`ovtrio.tensors` types.

Codecs do no I/O and import no server framework; each transport imports the module it needs
(``ovtrio.codecs.kserve_rest`` for KServe v2 REST, including Triton's binary tensor
extension), so importing this package costs nothing.
"""

from __future__ import annotations
