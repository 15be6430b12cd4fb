using Microsoft.FSharp.Core;
using SnnSpec.Data;
using SnnSpec.Datasets;
using SnnSpec.Distillation;
using SnnSpec.Facade;
using SnnSpec.KnowledgeDistillation;
using SnnSpec.Models;
using SnnSpec.Training;
using DistillationSpec = SnnSpec.KnowledgeDistillation.DistillationSpec;
using Trainer_ = SnnSpec.Training.Trainer;

namespace SnnSpec.Learning;

/// <summary>The optimizer of a training run.</summary>
public enum OptimizerKind
{
    /// <summary>Adam with bias correction.</summary>
    Adam,

    /// <summary>AdamW (decoupled weight decay).</summary>
    AdamW,

    /// <summary>SGD with momentum.</summary>
    Sgd,
}

/// <summary>How the learning rate changes over a training run.</summary>
public enum LearningRateSchedule
{
    /// <summary>The base rate throughout.</summary>
    Constant,

    /// <summary>Cosine annealing per step from the base rate to <see cref="TrainingOptions.MinLearningRate"/>.</summary>
    Cosine,

    /// <summary>The base rate times <see cref="TrainingOptions.StepGamma"/> every <see cref="TrainingOptions.StepEveryEpochs"/> epochs.</summary>
    Step,
}

/// <summary>Settings of <see cref="Trainer.TrainAsync"/>.</summary>
public sealed record TrainingOptions
{
    /// <summary>Passes over the training set ≥ 1.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Samples per step ≥ 1.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>The optimizer.</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Adam;

    /// <summary>Learning rate &gt; 0 (the base rate of the schedule).</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>SGD momentum in [0, 1).</summary>
    public float Momentum { get; init; } = 0.9f;

    /// <summary>Nesterov momentum for SGD.</summary>
    public bool Nesterov { get; init; }

    /// <summary>Weight decay ≥ 0.</summary>
    public float WeightDecay { get; init; }

    /// <summary>
    /// Whether weight decay also applies to biases and normalisation γ/β (false, the default, skips
    /// them as the usual "no decay on BN and bias" recipes do).
    /// </summary>
    public bool DecayNormAndBias { get; init; }

    /// <summary>The learning-rate schedule.</summary>
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Constant;

    /// <summary>The rate cosine annealing reaches at the end ≥ 0.</summary>
    public float MinLearningRate { get; init; }

    /// <summary>Epochs between decays of the step schedule ≥ 1.</summary>
    public int StepEveryEpochs { get; init; } = 30;

    /// <summary>Factor of each decay of the step schedule &gt; 0.</summary>
    public float StepGamma { get; init; } = 0.1f;

    /// <summary>Epochs (may be fractional) of a linear warm-up before the schedule ≥ 0.</summary>
    public double WarmupEpochs { get; init; }

    /// <summary>Clip the gradient to this global L2 norm &gt; 0 (null = no clipping).</summary>
    public float? ClipNorm { get; init; }

    /// <summary>Seed of the shuffling order and dropout masks.</summary>
    public int Seed { get; init; }

    /// <summary>
    /// Truncated backpropagation through time with a window of this many steps ≥ 1 (null = full
    /// BPTT). A student at T &gt; K runs each batch in chunks of K steps, each from the neuron
    /// states the previous chunk ended in, with no gradient across chunks; memory holds one
    /// chunk's activations. Every loss term sees a chunk as the whole sequence; the chunk losses
    /// are weighted by their share of T and the optimizer steps once per batch.
    /// </summary>
    public int? TruncationWindow { get; init; }

    /// <summary>
    /// Activation checkpointing: each segment of layers ending at a spiking population or residual
    /// block keeps only its output (and requested probes) for the backward pass and runs again
    /// there. Losses and gradients are those of a plain run (bit for bit but where a parameter read
    /// in several segments sums its parts in another order); memory holds fewer activations per
    /// step, for about one more forward pass of time.
    /// </summary>
    public bool CheckpointActivations { get; init; }

    /// <summary>
    /// Train each epoch on at most this many batches (null = the whole set): the run then uses a
    /// fixed, seeded subset of <c>MaxStepsPerEpoch × BatchSize</c> samples, reshuffled every epoch.
    /// </summary>
    public int? MaxStepsPerEpoch { get; init; }

    /// <summary>
    /// A validation set evaluated after every epoch; the result's student is then the epoch with the
    /// best validation accuracy at the full T (null: the last epoch).
    /// </summary>
    public Dataset? Validation { get; init; }

    /// <summary>
    /// A file for exact resumption (null: none). When cancellation stops a run, the trainer's
    /// snapshot (parameters, optimizer state, position, best epoch, history) is written here
    /// atomically; when the file exists as a run starts, the run continues from it and ends with
    /// the same parameters as an uninterrupted run. The file is deleted when a run finishes. The
    /// resumed run must use the same spec, data and options.
    /// </summary>
    public string? SnapshotPath { get; init; }

    internal void Validate()
    {
        Check.Positive(Epochs, nameof(Epochs), "TrainingOptions.Epochs");
        Check.Positive(BatchSize, nameof(BatchSize), "TrainingOptions.BatchSize");
        Check.PositiveFinite(LearningRate, nameof(LearningRate), "TrainingOptions.LearningRate");
        Check.Fraction(Momentum, false, nameof(Momentum), "TrainingOptions.Momentum");
        Check.NonNegativeFinite(WeightDecay, nameof(WeightDecay), "TrainingOptions.WeightDecay");
        Check.NonNegativeFinite(
            MinLearningRate,
            nameof(MinLearningRate),
            "TrainingOptions.MinLearningRate"
        );
        Check.Positive(StepEveryEpochs, nameof(StepEveryEpochs), "TrainingOptions.StepEveryEpochs");
        Check.PositiveFinite(StepGamma, nameof(StepGamma), "TrainingOptions.StepGamma");
        if (!(WarmupEpochs >= 0) || double.IsInfinity(WarmupEpochs))
        {
            throw new ArgumentOutOfRangeException(
                nameof(WarmupEpochs),
                WarmupEpochs,
                $"TrainingOptions.WarmupEpochs must be a finite number >= 0 (got {WarmupEpochs})."
            );
        }
        if (ClipNorm is { } c)
        {
            Check.PositiveFinite(c, nameof(ClipNorm), "TrainingOptions.ClipNorm");
        }
        if (TruncationWindow is { } k)
        {
            Check.Positive(k, nameof(TruncationWindow), "TrainingOptions.TruncationWindow");
        }
        if (MaxStepsPerEpoch is { } m)
        {
            Check.Positive(m, nameof(MaxStepsPerEpoch), "TrainingOptions.MaxStepsPerEpoch");
        }
        if (!Enum.IsDefined(Optimizer))
        {
            throw new ArgumentOutOfRangeException(
                nameof(Optimizer),
                Optimizer,
                "TrainingOptions.Optimizer must be Adam, AdamW or Sgd."
            );
        }
        if (!Enum.IsDefined(Schedule))
        {
            throw new ArgumentOutOfRangeException(
                nameof(Schedule),
                Schedule,
                "TrainingOptions.Schedule must be Constant, Cosine or Step."
            );
        }
    }

    internal TrainConfig ToFSharp(
        Action<TrainProgress> progress,
        Action<EpochReport, Model> onEpoch,
        CancellationToken ct,
        Action<TrainerSnapshot>? interrupted = null
    )
    {
        SnnSpec.OptimizerKind optimizer = Optimizer switch
        {
            OptimizerKind.Sgd => SnnSpec.OptimizerKind.NewSgd(Momentum, Nesterov),
            OptimizerKind.AdamW => SnnSpec.OptimizerKind.NewAdamW(0.9f, 0.999f, 1e-8f),
            _ => SnnSpec.OptimizerKind.NewAdam(0.9f, 0.999f, 1e-8f),
        };
        LrSchedule schedule = Schedule switch
        {
            LearningRateSchedule.Cosine => LrSchedule.NewCosine(MinLearningRate),
            LearningRateSchedule.Step => LrSchedule.NewStep(StepEveryEpochs, StepGamma),
            _ => LrSchedule.Constant,
        };
        if (WarmupEpochs > 0)
        {
            schedule = LrSchedule.NewWarmup(WarmupEpochs, schedule);
        }
        var d = TrainConfig.Default;
        return new TrainConfig(
            Epochs,
            optimizer,
            LearningRate,
            WeightDecay,
            DecayNormAndBias ? WeightDecayRule.All : WeightDecayRule.SkipNormAndBias,
            schedule,
            ClipNorm is { } c ? Interop.Some(c) : Interop.None<float>(),
            Seed,
            StudentOrder.Interleaved,
            TeacherCacheMode.Off,
            FuncConvert.FromAction(progress),
            FuncConvert.FromAction(onEpoch),
            ct,
            FuncConvert.FromAction<TrainerSnapshot>(snap =>
            {
                interrupted?.Invoke(snap);
                if (SnapshotPath is { } path)
                {
                    SnnSpec.IO.TrainerCheckpoint.save(path, snap);
                }
            }),
            SnapshotPath is { } p && File.Exists(p)
                ? Interop.Some(SnnSpec.IO.TrainerCheckpoint.load(p))
                : d.Resume,
            TruncationWindow is { } k ? Interop.Some(k) : Interop.None<int>(),
            CheckpointActivations
        );
    }
}

/// <summary>Progress of a training run after one step.</summary>
public sealed record TrainingProgress
{
    /// <summary>Epoch, from 0.</summary>
    public required int Epoch { get; init; }

    /// <summary>Step within the epoch, from 1.</summary>
    public required int Step { get; init; }

    /// <summary>Steps per epoch.</summary>
    public required int StepsPerEpoch { get; init; }

    /// <summary>Steps taken so far over all epochs.</summary>
    public required int GlobalStep { get; init; }

    /// <summary>The step's total loss.</summary>
    public required float Loss { get; init; }

    /// <summary>Each term's weighted value in the step.</summary>
    public required IReadOnlyDictionary<string, float> Terms { get; init; }

    /// <summary>Fraction of the step's batch the student classified correctly (time-mean readout).</summary>
    public required double BatchAccuracy { get; init; }

    /// <summary>Wall time since the run started.</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>The learning rate of the step (after the schedule).</summary>
    public float LearningRate { get; init; }

    /// <summary>The global gradient L2 norm before clipping.</summary>
    public double GradientNorm { get; init; }
}

/// <summary>The outcome of a training run.</summary>
public sealed record TrainingResult
{
    /// <summary>The trained student.</summary>
    public required SnnModel Student { get; init; }

    /// <summary>Steps taken.</summary>
    public required int Steps { get; init; }

    /// <summary>The last step's loss (NaN when no step ran).</summary>
    public required float FinalLoss { get; init; }

    /// <summary>
    /// True when the run stopped early on cancellation; the student is then the model at the end of
    /// the last completed epoch (the initial student when no epoch completed).
    /// </summary>
    public required bool Cancelled { get; init; }

    /// <summary>The 0-based epoch the student comes from (-1: no epoch completed).</summary>
    public int Epoch { get; init; } = -1;

    /// <summary>The student's validation accuracy at the full T, when a validation set was given.</summary>
    public double? ValidationAccuracy { get; init; }

    /// <summary>
    /// The loss terms' trained parameters of the same epoch as <see cref="Student"/> (e.g. the
    /// blurred-KD restoration block), named "loss.&lt;term&gt;.&lt;name&gt;"; empty when no term has
    /// parameters or no epoch completed.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> LossParameters { get; init; } =
        new Dictionary<string, Tensor>();
}

/// <summary>
/// Trains the student of a <see cref="DistillationSpec"/> with the core's distillation trainer: per
/// batch, the frozen teacher's outputs (eval mode, with the spec's probes), the student's forward
/// run in training mode, the weighted terms' gradient by reverse-mode differentiation, optional
/// clipping and one optimizer step at the scheduled rate. Training stops with an error naming the
/// term when a loss or gradient becomes NaN or infinite.
/// </summary>
public static class Trainer
{
    /// <summary>Runs the training loop on a worker thread.</summary>
    /// <param name="spec">Student, teacher and loss terms.</param>
    /// <param name="data">The training set: images shaped like the student's input, or event frames of T = the student's steps.</param>
    /// <param name="options">Epochs, batch size, optimizer, schedule; null uses the defaults.</param>
    /// <param name="progress">Receives a report after every step; may be null.</param>
    /// <param name="cancellationToken">Stops after the current step; the result then has <see cref="TrainingResult.Cancelled"/> set.</param>
    /// <exception cref="SnnSpec.Training.TrainingDivergedException">A loss term or gradient became NaN or infinite (the task faults with it).</exception>
    public static Task<TrainingResult> TrainAsync(
        DistillationSpec spec,
        Dataset data,
        TrainingOptions? options = null,
        IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default
    )
    {
        Check.NotNull(spec, nameof(spec));
        Check.NotNull(data, nameof(data));
        var o = options ?? new TrainingOptions();
        o.Validate();
        CheckData(spec, data, nameof(data));
        if (o.Validation is { } v)
        {
            CheckData(spec, v, nameof(options));
        }
        return Task.Run(
            () => Run(spec, data, o, progress, cancellationToken),
            CancellationToken.None
        );
    }

    private static void CheckData(DistillationSpec spec, Dataset data, string param)
    {
        var what = param == "data" ? "data" : "options.Validation";
        data.CheckReadableBy(spec.Student, "the student", what, param);
        if (spec.Teacher is { } teacher)
        {
            data.CheckReadableBy(teacher, "the teacher", what, param);
        }
        if (data.Classes > spec.Student.Classes)
        {
            throw new ArgumentException(
                $"{(param == "data" ? "data" : "options.Validation")} has {data.Classes} classes but the student predicts {spec.Student.Classes}.",
                param
            );
        }
    }

    private static Dataset Limit(Dataset data, TrainingOptions o)
    {
        if (o.MaxStepsPerEpoch is not { } m || (long)m * o.BatchSize >= data.Count)
        {
            return data;
        }
        var order = Enumerable.Range(0, data.Count).ToArray();
        new Random(o.Seed).Shuffle(order);
        return data.SubsetOf(order.Take(m * o.BatchSize).Order().ToArray());
    }

    private static IReadOnlyDictionary<string, Tensor> Named(Parameters ps) =>
        ps.Names.ToDictionary(
            n => n,
            n => Tensors.TensorOps.FromArray(ps[n].ToArray(), ps[n].Shape),
            StringComparer.Ordinal
        );

    private static Model Copy(Model m) =>
        new(
            m.Architecture,
            m.Mode,
            ParametersModule.map(
                FuncConvert.FromFunc<string, Tensor, Tensor>(
                    (_, t) => Tensors.TensorOps.FromArray(t.ToArray(), t.Shape)
                ),
                m.Parameters
            ),
            ParametersModule.map(
                FuncConvert.FromFunc<string, Tensor, Tensor>(
                    (_, t) => Tensors.TensorOps.FromArray(t.ToArray(), t.Shape)
                ),
                m.Buffers
            )
        );

    private static TrainingResult Run(
        DistillationSpec spec,
        Dataset data,
        TrainingOptions o,
        IProgress<TrainingProgress>? progress,
        CancellationToken ct
    )
    {
        var train = Limit(data, o);
        var batchOptions = new BatchingOptions
        {
            BatchSize = o.BatchSize,
            Shuffle = true,
            Seed = o.Seed,
            Prefetch = 1,
        }.ToFSharp(train.Frames > 0);
        var trainBatcher = Batching.create(batchOptions, train.Source);
        var validation = o.Validation is { } v
            ? Interop.Some(
                Batching.create(
                    new BatchingOptions
                    {
                        BatchSize = o.BatchSize,
                        Shuffle = false,
                        Prefetch = 1,
                    }.ToFSharp(v.Frames > 0),
                    v.Source
                )
            )
            : Interop.None<Batcher>();
        int perEpoch = trainBatcher.BatchesPerEpoch;
        int steps = 0;
        float last = float.NaN;
        // The last completed epoch's model, copied out of the trainer's recycled buffers.
        Model kept = spec.Student.Inner;
        int keptEpoch = -1;
        double? keptAccuracy = null;
        TrainerSnapshot? interrupted = null;
        var cfg = o.ToFSharp(
            p =>
            {
                steps = p.Step;
                last = p.Total;
                if (progress is null)
                {
                    return;
                }
                var terms = new Dictionary<string, float>(StringComparer.Ordinal);
                foreach (var (name, value) in p.Losses.Select(x => (x.Item1, x.Item2)))
                {
                    terms[name] = terms.GetValueOrDefault(name) + value;
                }
                progress.Report(
                    new TrainingProgress
                    {
                        Epoch = p.Epoch,
                        Step = p.Batch + 1,
                        StepsPerEpoch = perEpoch,
                        GlobalStep = p.Step,
                        Loss = p.Total,
                        Terms = terms,
                        BatchAccuracy = p.Accuracy,
                        Elapsed = p.Elapsed,
                        LearningRate = p.LearningRate,
                        GradientNorm = p.GradNorm,
                    }
                );
            },
            (report, model) =>
            {
                // Without validation every epoch is the best so far (the last one wins).
                if (report.IsBest)
                {
                    kept = Copy(model);
                    keptEpoch = report.Epoch;
                    keptAccuracy = report.Validation is null
                        ? null
                        : report.Validation.Value.Accuracy;
                }
            },
            ct,
            snap => interrupted = snap
        );
        try
        {
            var result = Trainer_.fitOne(
                cfg,
                spec.ToFSharp(spec.Student.Inner),
                trainBatcher,
                validation
            );
            if (o.SnapshotPath is { } snapshot && File.Exists(snapshot))
            {
                File.Delete(snapshot);
            }
            return new TrainingResult
            {
                Student = new SnnModel(result.Best, spec.Student.Quantization),
                Steps = steps,
                FinalLoss = last,
                Cancelled = false,
                Epoch = result.BestEpoch,
                ValidationAccuracy = result.BestAccuracy is null ? null : result.BestAccuracy.Value,
                LossParameters = Named(result.BestLossParameters),
            };
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return new TrainingResult
            {
                Student = new SnnModel(kept, spec.Student.Quantization),
                Steps = steps,
                FinalLoss = last,
                Cancelled = true,
                Epoch = keptEpoch,
                ValidationAccuracy = keptAccuracy,
                LossParameters =
                    keptEpoch >= 0 && interrupted is { } snap
                        ? Named(snap.Stages.Head.Students.Head.BestLossParameters)
                        : new Dictionary<string, Tensor>(),
            };
        }
    }
}
