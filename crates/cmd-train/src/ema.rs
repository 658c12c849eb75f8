//! The exponential moving average of a model's weights, which sampling uses.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// The EMA decay at optimisation step `step` (0-based): diffusers' `EMAModel` warm-up
/// `min(decay, (1 + step) / (10 + step))`, so a short run's average is not dominated by the
/// starting weights.
pub fn ema_decay(decay: f64, step: usize) -> f64 {
    decay.min((1.0 + step as f64) / (10.0 + step as f64))
}

/// `ema <- decay * ema + (1 - decay) * current`, parameter by parameter (same structure).
pub fn ema_update<M: Module>(ema: M, current: &M, decay: f64) -> M {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().flatten::<1>(0, D - 1));
        }
    }
    struct Blend {
        current: std::vec::IntoIter<Tensor<1>>,
        decay: f64,
    }
    impl ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let current = self.current.next().expect("modules of the same structure");
            let decay = self.decay;
            param.map(|e| {
                let shape = e.shape();
                e.mul_scalar(decay) + current.reshape(shape).mul_scalar(1.0 - decay)
            })
        }
    }
    let mut collect = Collect(Vec::new());
    current.visit(&mut collect);
    ema.map(&mut Blend {
        current: collect.0.into_iter(),
        decay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    #[test]
    fn ema_blends_every_parameter() {
        let device = Device::flex();
        let a = LinearConfig::new(3, 2).init(&device);
        let b = LinearConfig::new(3, 2).init(&device);
        let host = |l: &burn::nn::Linear| l.weight.val().into_data().try_into_vec::<f32>().unwrap();
        let (wa, wb) = (host(&a), host(&b));
        let blended = ema_update(a, &b, 0.75);
        for ((x, y), z) in wa.iter().zip(&wb).zip(host(&blended)) {
            assert!((0.75 * x + 0.25 * y - z).abs() < 1e-6);
        }
    }

    #[test]
    fn ema_warms_up() {
        assert!((ema_decay(0.999, 0) - 0.1).abs() < 1e-12);
        assert!((ema_decay(0.999, 90) - 0.91).abs() < 1e-12);
        assert_eq!(ema_decay(0.999, 100_000), 0.999);
    }
}
