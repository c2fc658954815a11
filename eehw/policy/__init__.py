"""Exit policies, threshold selection and the evaluation of a trained network."""
