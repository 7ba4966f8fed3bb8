"""linkage-hub: ingest, link (Splink), rules, results, report.  The only place that imports Splink."""
