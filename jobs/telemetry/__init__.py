"""What every job measures about itself while it runs, written as ``system`` and ``gpu`` records."""
