"""Reports of one or several runs of the same stream: `report.md` with tables and PNG figures.

`runs` loads run folders (results, metrics, manifest, method analyses), `tables` renders the
Markdown (and plain-text) tables, `plots` the figures, `analysis` reads and writes the method
analyses, `bench` renders `mcit bench` files, and `report` puts them
together.
"""

from mcit.errors import ReportError

__all__ = ["ReportError"]
