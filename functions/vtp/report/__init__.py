"""The job report page: report.html beside a job's manifest.json (see page.py)."""
