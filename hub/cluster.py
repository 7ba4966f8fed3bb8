"""Clusters: connected components of the links at the cluster threshold (Splink).

Every record of the run gets a cluster (a record with no link is its own
cluster), so the rules engine can ask "which datasets is this person in"
with one join.  Cluster ids are ``c<rid>`` of a member record: opaque to
everyone, stable within a run, meaningless across runs.

Both engines run Splink's connected components (``solve_connected_components``,
links at ``match_probability >= p`` of the threshold weight; a cluster is named
by its smallest ``rid``).  The DuckDB engine calls it through the linker
(:func:`cluster_links`), which also joins every input column back onto the
result; the Spark engine calls it on the nodes and edges alone
(:func:`cluster_nodes`), because on Spark that join back -- every word of every
filter, for every record -- costs more than the clustering itself.
"""

from __future__ import annotations

from typing import Any

from .store import q


def cluster_links(linker: Any, db_api: Any, scored: str, threshold_weight: float) -> str:
    """Input: table ``scored(rid_l, rid_r, match_weight, match_probability)``.
    Output: the name of a table ``(cluster_id, rid, ...)`` with every input record."""
    sdf = db_api.register(scored, table_name=f"{scored}_for_clustering")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        sdf, threshold_match_weight=threshold_weight)
    return clusters.physical_name


def cluster_nodes(db_api: Any, nodes: str, scored: str, threshold_weight: float) -> str:
    """Input: table ``nodes(rid)`` (every record of the run) and table ``scored(rid_l, rid_r,
    match_weight, match_probability)``.  Output: the name of a table ``(rid, cluster_id)`` with every node."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    clusters = cluster_pairwise_predictions_at_threshold(
        db_api.register(nodes, table_name=f"{nodes}_for_clustering"),
        db_api.register(scored, table_name=f"{scored}_for_clustering"),
        db_api, node_id_column_name="rid", threshold_match_weight=threshold_weight)
    return clusters.physical_name


def insert_clusters_sql(clusters: str, records: str = "hub.records", target: str = "hub.clusters") -> str:
    """Input: Splink's clusters table ``clusters(cluster_id, rid)`` and ``records``; bound: run id.
    Output: rows appended to ``target(run_id, cluster_id, dataset, token)``."""
    return (f"INSERT INTO {q(target)} (run_id, cluster_id, dataset, token)"
            f" SELECT CAST(? AS VARCHAR), 'c' || CAST(c.cluster_id AS VARCHAR), r.dataset, r.token"
            f" FROM {clusters} c JOIN {q(records)} r ON r.rid = c.rid")


def cluster_sizes_sql(clusters: str) -> str:
    """Input: ``clusters(cluster_id, rid)``.  Output: (size, how many clusters have it)."""
    return (f"SELECT n, count(*) FROM (SELECT cluster_id, count(*) AS n FROM {clusters} GROUP BY cluster_id)"
            f" GROUP BY n ORDER BY n")
