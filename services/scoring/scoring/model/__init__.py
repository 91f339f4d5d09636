"""The predictive half of scoring: tabular data to features, a calibrated LightGBM model,
its explanations, and the directory format a trained model is saved in."""
