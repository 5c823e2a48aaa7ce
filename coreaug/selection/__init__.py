"""Selection: gradient estimates, kNN graphs, facility location, budgets, baselines."""
from .baselines import select_maxloss, select_random
from .budgets import budget_size, class_budgets
from .coreset import select_coreset
from .facility_location import apricot_greedy, facility_location_value, lazy_greedy
from .gradients import estimate_gradients, last_layer_gradients, logit_gradients
from .knn import knn_graph
from .selection import Selection
from .weights import cluster_sizes, normalise_weights

__all__ = [
    "Selection", "select_coreset", "select_random", "select_maxloss", "budget_size", "class_budgets",
    "knn_graph", "lazy_greedy", "apricot_greedy", "facility_location_value", "cluster_sizes",
    "normalise_weights", "logit_gradients", "last_layer_gradients", "estimate_gradients",
]
