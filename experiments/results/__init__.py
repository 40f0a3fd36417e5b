"""What a sweep's run folders become: the runs read (``run_folders``), the statistics over seeds
and tasks (``aggregate``), the paper's claims tested (``claims``), figures and ``REPORT.md``."""
