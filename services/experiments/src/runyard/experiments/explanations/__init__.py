"""XAI results of an experiment (SHAP values, LIME weights, integrated gradients, Grad-CAM maps
...), one row per explanation of a signal. They belong to the experiment: who may change it may
add and delete them, who may read it may read them."""
