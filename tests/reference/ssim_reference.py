"""Reference SSIM values for cmd-model's metrics tests, from scikit-image.

Pinned: scikit-image==0.25.2, numpy==2.2.6. Run: python ssim_reference.py
The two test planes are defined by formulas (repeated in crates/cmd-model/src/metrics.rs) so
no data file is needed; the printed numbers are pasted into that test.
"""

import numpy as np
from skimage.metrics import structural_similarity


def planes(h=24, w=32):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = 0.5 + 0.4 * np.sin(0.3 * x + 0.2 * y) * np.cos(0.05 * x * y)
    b = np.clip(a + 0.1 * np.sin(1.7 * x + 2.3 * y), 0.0, 1.0)
    # The Rust side computes in f32.
    return a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)


a, b = planes()
value = structural_similarity(
    a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
)
print(f"ssim 24x32: {value:.10f}")
