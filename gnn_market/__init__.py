"""CryptoGraph: hourly cross-asset graphs of Binance markets and a GATv2 next-hour classifier.

Modules (one concept each): ``store`` (Parquet market store), ``binance``
(package: public REST client, weight pacing, universe rules, payload parsers),
``vision`` (archive importer), ``sample`` / ``synthetic`` (bundled and
simulated data), ``panel`` (aligned T x N arrays),
``feature_generator`` (node features, labels), ``graph_builder`` (correlation
edges, snapshots), ``model`` (GATv2Classifier), ``train`` / ``predict`` (CLIs),
``encoder`` (checkpoint -> probabilities and embeddings).
"""
__version__ = "0.1.0"
