//! Data parallel training over several devices, shared by the three trainers.
//!
//! Every step, each device gets a copy of the model and its share of the batch, and runs its
//! forward and backward pass in its own thread. Several CUDA GPUs combine their gradients the
//! way burn's distributed data parallel training does: the parameters are marked distributed,
//! and each backward pass all-reduces every gradient across the GPUs (NCCL) as soon as it is
//! ready. Other devices (the CPU, wgpu GPUs), whose runtimes have no collective operations in
//! burn 0.22, send their gradients to the first device, which sums them. Either way the first
//! device takes the optimiser step, so a run resumes the same on any number of devices.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::distributed::{DistributedConfig, DistributedContext, ReduceOperation};
use burn::tensor::{Device, Tensor};

use crate::error::{Result, Setting, TrainError, ensure};
use crate::tensors::to_scalar;

/// The devices a run trains on, and how a step's gradients are combined over them.
pub struct DataParallel {
    /// The devices (with autodiff): the first holds the model and the optimiser.
    devices: Vec<Device>,
    /// burn's all-reduce server when the GPUs all-reduce (several CUDA GPUs); held for the run.
    collective: Option<DistributedContext>,
}

/// One device's part of a step.
pub struct Shard<'a> {
    /// Which device (an index into [`DataParallel::devices`]).
    pub index: usize,
    /// The device.
    pub device: &'a Device,
    /// Its clips: a range of the step's batch.
    pub range: Range<usize>,
}

/// Splits `batch` clips over `devices` as evenly as possible (the first get one more).
pub fn split(batch: usize, devices: usize) -> Vec<Range<usize>> {
    let (size, extra) = (batch / devices, batch % devices);
    let mut start = 0;
    (0..devices)
        .map(|i| {
            let len = size + usize::from(i < extra);
            start += len;
            start - len..start
        })
        .collect()
}

/// Marks every parameter distributed, so a backward pass all-reduces its gradient.
struct MarkDistributed;

impl ModuleMapper for MarkDistributed {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id = param.id;
        param.map(|tensor| tensor.set_distributed(id))
    }
}

/// One worker's loss (on the first device) and the gradients it hands on, if any.
type Outcome = (Tensor<1>, Option<GradientsParams>);

impl DataParallel {
    /// Trains on `devices` (autodiff is added), after checking that a step's `batch` clips
    /// cover them. `all_reduce`: the devices are GPUs whose runtime all-reduces gradients
    /// (several CUDA GPUs, through NCCL); otherwise the first device sums them.
    pub fn new(devices: Vec<Device>, all_reduce: bool, batch: usize) -> Result<Self> {
        let count = devices.len();
        ensure(count > 0, Setting::Devices, || {
            "must be at least one".into()
        })?;
        ensure(batch >= count, Setting::Batch, || {
            format!(
                "{batch} is smaller than the {count} devices: every device needs at least one clip"
            )
        })?;
        let devices: Vec<Device> = devices.into_iter().map(|d| d.autodiff()).collect();
        let collective = (all_reduce && count > 1).then(|| {
            let config = DistributedConfig {
                all_reduce_op: ReduceOperation::Sum,
            };
            DistributedContext::init(devices.clone(), config)
        });
        Ok(Self {
            devices,
            collective,
        })
    }

    /// The devices, the first holding the model and the optimiser.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The first device.
    pub fn main(&self) -> &Device {
        &self.devices[0]
    }

    /// One step's loss and gradients: each device gets a copy of `model` and its share of the
    /// `batch` clips; `loss_of(replica, shard)` is the mean loss over the shard's clips. Each
    /// loss is weighted by its share of the batch, so the summed gradients are those of the
    /// whole batch's mean loss (returned as a number); they are on the first device.
    pub fn step<M: Module + Clone>(
        &self,
        model: &M,
        batch: usize,
        loss_of: impl Fn(&M, &Shard) -> Result<Tensor<1>> + Sync,
    ) -> Result<(f64, GradientsParams)> {
        let shards = split(batch, self.devices.len());
        if let [range] = &shards[..] {
            let shard = Shard {
                index: 0,
                device: self.main(),
                range: range.clone(),
            };
            let loss = loss_of(model, &shard)?;
            let grads = GradientsParams::from_grads(loss.backward(), model);
            return Ok((to_scalar(loss)?, grads));
        }
        let outcomes = self.run_workers(model, batch, shards, &loss_of);
        // A worker's own error comes first; the others then stopped without an outcome.
        let outcomes = outcomes.into_iter().collect::<Result<Vec<_>>>()?;
        let mut losses = Vec::with_capacity(outcomes.len());
        let mut sum = GradientsAccumulator::new();
        for (loss, grads) in outcomes.into_iter().flatten() {
            losses.push(loss);
            if let Some(grads) = grads {
                sum.accumulate(model, grads);
            }
        }
        Ok((to_scalar(Tensor::cat(losses, 0).sum())?, sum.grads()))
    }

    /// Runs each shard in its own thread. Every worker computes its loss before any runs its
    /// backward pass (the all-reduce waits for all of them), so an error or a panic on one
    /// device stops them all instead of leaving the others waiting.
    fn run_workers<M: Module + Clone>(
        &self,
        model: &M,
        batch: usize,
        shards: Vec<Range<usize>>,
        loss_of: &(impl Fn(&M, &Shard) -> Result<Tensor<1>> + Sync),
    ) -> Vec<Result<Option<Outcome>>> {
        let main = self.main();
        let collective = self.collective.is_some();
        let ready = Barrier::new(shards.len());
        let failed = AtomicBool::new(false);
        thread::scope(|scope| {
            let workers: Vec<_> = self
                .devices
                .iter()
                .zip(shards)
                .enumerate()
                .map(|(index, (device, range))| {
                    let replica = if index == 0 {
                        model.clone()
                    } else {
                        model.clone().fork(device)
                    };
                    let replica = if collective {
                        replica.map(&mut MarkDistributed)
                    } else {
                        replica
                    };
                    let (ready, failed) = (&ready, &failed);
                    scope.spawn(move || {
                        let weight = range.len() as f64 / batch as f64;
                        let shard = Shard {
                            index,
                            device,
                            range,
                        };
                        let loss = catch_unwind(AssertUnwindSafe(|| loss_of(&replica, &shard)))
                            .unwrap_or_else(|panic| Err(panicked(index, panic.as_ref())));
                        if loss.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        ready.wait();
                        let loss = loss?.mul_scalar(weight);
                        if failed.load(Ordering::SeqCst) {
                            return Ok(None);
                        }
                        let grads = GradientsParams::from_grads(loss.backward(), &replica);
                        // All-reduced gradients are the same on every GPU: keep the first's.
                        let grads = match (collective, index) {
                            (true, 0) => Some(grads),
                            (true, _) => None,
                            (false, _) => Some(grads.to_device(main, &replica)),
                        };
                        Ok(Some((loss.detach().to_device(main), grads)))
                    })
                })
                .collect();
            workers
                .into_iter()
                .enumerate()
                .map(|(index, worker)| {
                    worker
                        .join()
                        .unwrap_or_else(|panic| Err(panicked(index, panic.as_ref())))
                })
                .collect()
        })
    }
}

/// The error for a worker that panicked.
fn panicked(index: usize, payload: &(dyn std::any::Any + Send)) -> TrainError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    TrainError::Device { index, message }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Tensor, TensorData};

    use super::*;
    use crate::tensors::to_vec;

    /// `n` handles of the CPU device.
    fn cpus(n: usize) -> Vec<Device> {
        (0..n).map(|_| Device::flex()).collect()
    }

    #[test]
    fn batches_split_evenly_over_devices() {
        assert_eq!(split(4, 1).len(), 1);
        assert_eq!(split(4, 1)[0], 0..4);
        assert_eq!(split(4, 2), [0..2, 2..4]);
        assert_eq!(split(5, 3), [0..2, 2..4, 4..5]);
        assert_eq!(split(3, 3), [0..1, 1..2, 2..3]);
    }

    /// Rows `range` of a fixed batch of three 2-vectors.
    fn inputs(range: Range<usize>, device: &Device) -> Tensor<2> {
        let rows = [[1.0f32, 2.0], [-3.0, 0.5], [0.25, 4.0]];
        let values: Vec<f32> = rows[range.clone()].iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(values, [range.len(), 2]), device)
    }

    /// Mean squared output of a 2 -> 1 linear layer over the shard's rows.
    fn loss(model: &Linear, shard: &Shard) -> Result<Tensor<1>> {
        let x = inputs(shard.range.clone(), shard.device);
        Ok(model.forward(x).powi_scalar(2).mean().reshape([1]))
    }

    fn model(device: &Device) -> Linear {
        device.seed(7);
        LinearConfig::new(2, 1).init(device)
    }

    #[test]
    fn a_batch_split_over_threads_gives_the_whole_batch_gradient() {
        let one = DataParallel::new(cpus(1), false, 3).unwrap();
        let two = DataParallel::new(cpus(2), false, 3).unwrap();
        let linear = model(one.main());
        let (loss_one, grads_one) = one.step(&linear, 3, loss).unwrap();
        let (loss_two, grads_two) = two.step(&linear, 3, loss).unwrap();

        // Closed form: loss = mean_i (w.x_i + b)^2, dloss/dw = 2/3 sum_i (w.x_i + b) x_i.
        let w = to_vec(linear.weight.val()).unwrap();
        let b = to_vec(linear.bias.as_ref().unwrap().val()).unwrap()[0];
        let rows = [[1.0f32, 2.0], [-3.0, 0.5], [0.25, 4.0]];
        let out: Vec<f32> = rows.iter().map(|x| w[0] * x[0] + w[1] * x[1] + b).collect();
        let expected_loss = out.iter().map(|y| y * y).sum::<f32>() / 3.0;
        let expected_w: Vec<f32> = (0..2)
            .map(|j| 2.0 / 3.0 * out.iter().zip(&rows).map(|(y, x)| y * x[j]).sum::<f32>())
            .collect();
        for (value, grads) in [(loss_one, &grads_one), (loss_two, &grads_two)] {
            assert!((value - expected_loss as f64).abs() < 1e-5, "{value}");
            let dw = grads.get::<2>(linear.weight.id).unwrap();
            let dw = to_vec(dw).unwrap();
            for (a, e) in dw.iter().zip(&expected_w) {
                assert!((a - e).abs() < 1e-5, "{dw:?} vs {expected_w:?}");
            }
        }
    }

    #[test]
    fn an_error_or_panic_on_one_device_stops_the_step_with_its_message() {
        let two = DataParallel::new(cpus(2), false, 2).unwrap();
        let linear = model(two.main());
        let err = two
            .step(&linear, 2, |model, shard| {
                if shard.index == 1 {
                    return Err(TrainError::path("clip-7.mp4", "unreadable"));
                }
                loss(model, shard)
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "clip-7.mp4: unreadable");
        let err = two
            .step(&linear, 2, |model, shard| {
                if shard.index == 1 {
                    panic!("shapes differ");
                }
                loss(model, shard)
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "training on device 1 failed: shapes differ"
        );
    }

    #[test]
    fn bad_device_counts_are_refused() {
        let err = DataParallel::new(cpus(0), false, 2).err().unwrap();
        assert_eq!(err.to_string(), "devices must be at least one");
        let err = DataParallel::new(cpus(3), false, 2).err().unwrap();
        assert!(
            err.to_string()
                .contains("batch 2 is smaller than the 3 devices"),
            "{err}"
        );
    }
}
