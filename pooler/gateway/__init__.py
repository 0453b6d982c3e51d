"""What the data path runs on, below the processes: the routing snapshot and its gateway-surface settings, the
session table, file pins, the pooled rate-limit view, the evidence the access log yields, replica-shared state
and the batched writes. Used by the ext_proc (and the renderer for the pooled view's names); never imports a
process package."""
