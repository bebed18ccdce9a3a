"""Council reports: the scheme's impact by month, category and ward, and each organisation's
and partner's own figures, as pages, CSV downloads and ``GET /api/v1/reports/summary``."""
