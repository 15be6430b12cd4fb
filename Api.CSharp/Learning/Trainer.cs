using System.Diagnostics;
using Microsoft.FSharp.Core;
using SnnSpec.Datasets;
using SnnSpec.Distillation;
using SnnSpec.Facade;
using SnnSpec.KnowledgeDistillation;
using SnnSpec.Models;

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

/// <summary>Settings of <see cref="Trainer.TrainAsync"/>.</summary>
public sealed record TrainingOptions
{
    /// <summary>Passes over the training set ≥ 1.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Samples per step ≥ 1.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>The optimizer.</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Adam;

    /// <summary>Learning rate &gt; 0.</summary>
    public float LearningRate { get; init; } = 1e-3f;

    /// <summary>SGD momentum in [0, 1).</summary>
    public float Momentum { get; init; } = 0.9f;

    /// <summary>Weight decay ≥ 0.</summary>
    public float WeightDecay { get; init; }

    /// <summary>Seed of the shuffling order and dropout masks.</summary>
    public int Seed { get; init; }

    /// <summary>Stop each epoch after this many steps (null = the whole epoch).</summary>
    public int? MaxStepsPerEpoch { get; init; }

    internal void Validate()
    {
        Check.Positive(Epochs, nameof(Epochs), "TrainingOptions.Epochs");
        Check.Positive(BatchSize, nameof(BatchSize), "TrainingOptions.BatchSize");
        Check.PositiveFinite(LearningRate, nameof(LearningRate), "TrainingOptions.LearningRate");
        Check.Fraction(Momentum, false, nameof(Momentum), "TrainingOptions.Momentum");
        Check.NonNegativeFinite(WeightDecay, nameof(WeightDecay), "TrainingOptions.WeightDecay");
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

    /// <summary>True when the run stopped early on cancellation (the student is as trained so far).</summary>
    public required bool Cancelled { get; init; }
}

/// <summary>
/// Trains the student of a <see cref="DistillationSpec"/>: per batch, the frozen teacher's outputs
/// (eval mode, with the spec's probes), the student's forward run in training mode, the weighted
/// terms' gradient by reverse-mode differentiation and one optimizer step.
/// </summary>
public static class Trainer
{
    /// <summary>Runs the training loop on a worker thread.</summary>
    /// <param name="spec">Student, teacher and loss terms.</param>
    /// <param name="data">The training set (samples shaped like the student's input).</param>
    /// <param name="options">Epochs, batch size, optimizer; null uses the defaults.</param>
    /// <param name="progress">Receives a report after every step; may be null.</param>
    /// <param name="cancellationToken">Stops after the current step; the result then has <see cref="TrainingResult.Cancelled"/> set.</param>
    public static Task<TrainingResult> TrainAsync(
        DistillationSpec spec,
        ImageDataset data,
        TrainingOptions? options = null,
        IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default
    )
    {
        Check.NotNull(spec, nameof(spec));
        Check.NotNull(data, nameof(data));
        var o = options ?? new TrainingOptions();
        o.Validate();
        if (!data.SampleShape.SequenceEqual(spec.Student.InputShape))
        {
            throw new ArgumentException(
                $"data holds samples of shape [{string.Join(", ", data.SampleShape)}] but the student {spec.Student.Name} takes [{string.Join(", ", spec.Student.InputShape)}].",
                nameof(data)
            );
        }
        if (data.Classes > spec.Student.Classes)
        {
            throw new ArgumentException(
                $"data has {data.Classes} classes but the student predicts {spec.Student.Classes}.",
                nameof(data)
            );
        }
        return Task.Run(
            () => Run(spec, data, o, progress, cancellationToken),
            CancellationToken.None
        );
    }

    private static TrainingResult Run(
        DistillationSpec spec,
        ImageDataset data,
        TrainingOptions o,
        IProgress<TrainingProgress>? progress,
        CancellationToken ct
    )
    {
        var watch = Stopwatch.StartNew();
        var loader = data.Batches(
            new BatchingOptions
            {
                BatchSize = o.BatchSize,
                Shuffle = true,
                Seed = o.Seed,
                Prefetch = 1,
            }
        );
        int perEpoch = Math.Min(loader.BatchesPerEpoch, o.MaxStepsPerEpoch ?? int.MaxValue);
        var model = spec.Student.Inner;
        var state = OptimizerState.Empty;
        var rng = RngModule.create(o.Seed);
        var teacherCtx = spec.TeacherProbes.ToFSharp();
        var studentProbes = spec.StudentProbes.ToFSharp().Probes;
        var teacher = spec.UsesTeacher ? spec.Teacher : null;
        int global = 0;
        float last = float.NaN;
        for (int epoch = 0; epoch < o.Epochs; epoch++)
        {
            int step = 0;
            foreach (var batch in loader.Epoch(epoch))
            {
                if (step >= perEpoch)
                {
                    break;
                }
                if (ct.IsCancellationRequested)
                {
                    return Result(model, global, last, true);
                }
                var x = batch.Inputs;
                var labels = (int[])batch.Labels.Clone();
                KdOutputs teacherOut = teacher is null
                    ? KdOutputsModule.ofLogits(TensorOpsScalarZero)
                    : Diff.noGrad(
                        FuncConvert.FromFunc(() =>
                            KdOutputsModule.ofForward(
                                ModelModule.forward(teacherCtx, teacher.Inner, x)
                            )
                        )
                    );
                var ctx = new ForwardContext(true, RngModule.fold(global, rng), studentProbes);
                int nBuffers = model.Buffers.Count;
                var current = model;
                var result = ParametersModule.valueAndGradAux(
                    FuncConvert.FromFunc<Parameters, Tuple<Tensor, Tensor[]>>(ps =>
                    {
                        var output = ModelModule.apply(ctx, current, ps, x);
                        var total = LossTermModule.totalWithParts(
                            spec.FsTerms,
                            teacherOut,
                            KdOutputsModule.ofForward(output),
                            labels
                        );
                        var aux = ParametersModule
                            .values(output.Buffers)
                            .Concat(total.Item2.Select(p => p.Item2))
                            .Append(Diff.detach(output.Logits))
                            .ToArray();
                        return Tuple.Create(total.Item1, aux);
                    }),
                    model.Parameters
                );
                var (loss, grads, auxOut) = (result.Item1, result.Item2, result.Item3);
                var stepped = o.Optimizer switch
                {
                    OptimizerKind.Sgd => Optim.sgd(
                        new SgdConfig(o.LearningRate, o.Momentum, false, o.WeightDecay),
                        state,
                        model.Parameters,
                        grads
                    ),
                    _ => Optim.adam(
                        new AdamConfig(
                            o.LearningRate,
                            0.9f,
                            0.999f,
                            1e-8f,
                            o.WeightDecay,
                            o.Optimizer == OptimizerKind.AdamW
                        ),
                        state,
                        model.Parameters,
                        grads
                    ),
                };
                state = stepped.Item2;
                var buffers = ParametersModule.withValues(model.Buffers, auxOut[..nBuffers]);
                model = new Model(model.Architecture, model.Mode, stepped.Item1, buffers);
                last = loss.ToScalar();
                step++;
                global++;
                if (progress is not null)
                {
                    var terms = new Dictionary<string, float>(StringComparer.Ordinal);
                    int i = nBuffers;
                    foreach (var info in spec.Terms)
                    {
                        terms[info.Name] =
                            terms.GetValueOrDefault(info.Name) + auxOut[i++].ToScalar();
                    }
                    var correct = Readout.correctPerStep(auxOut[^1], labels);
                    progress.Report(
                        new TrainingProgress
                        {
                            Epoch = epoch,
                            Step = step,
                            StepsPerEpoch = perEpoch,
                            GlobalStep = global,
                            Loss = last,
                            Terms = terms,
                            BatchAccuracy = (double)correct[^1] / labels.Length,
                            Elapsed = watch.Elapsed,
                        }
                    );
                }
            }
        }
        return Result(model, global, last, false);
    }

    private static readonly Tensor TensorOpsScalarZero = Tensors.TensorOps.Zeros(1, 1, 1);

    private static TrainingResult Result(Model model, int steps, float loss, bool cancelled) =>
        new()
        {
            Student = new SnnModel(model),
            Steps = steps,
            FinalLoss = loss,
            Cancelled = cancelled,
        };
}
