using SnnSpec.Datasets;
using SnnSpec.Facade;

namespace SnnSpec.Models;

/// <summary>Accuracy at every deployment length t = 1…T from T-step runs (cumulative time-mean readout).</summary>
public sealed class StepAccuracy
{
    internal StepAccuracy(int[] correct, int total)
    {
        Correct = correct;
        Total = total;
        Accuracy = correct.Select(c => total == 0 ? 0.0 : (double)c / total).ToArray();
    }

    /// <summary>Correct predictions at t = 1…T (index t − 1).</summary>
    public IReadOnlyList<int> Correct { get; }

    /// <summary>Samples evaluated.</summary>
    public int Total { get; }

    /// <summary>Accuracy in [0, 1] at t = 1…T (index t − 1).</summary>
    public IReadOnlyList<double> Accuracy { get; }

    /// <summary>Accuracy at the full T.</summary>
    public double Final => Accuracy.Count == 0 ? 0.0 : Accuracy[^1];

    /// <inheritdoc />
    public override string ToString() =>
        string.Join(", ", Accuracy.Select((a, i) => $"t={i + 1}: {a:P2}"));
}

/// <summary>Full-range evaluation: accuracy at every timestep from one T-step run per batch.</summary>
public static class Evaluator
{
    /// <summary>Correct predictions at every t = 1…T for per-step logits [T, B, K].</summary>
    /// <param name="logits">Per-step logits [T, B, K].</param>
    /// <param name="labels">B labels.</param>
    public static int[] CorrectPerStep(Tensor logits, int[] labels)
    {
        Check.NotNull(logits, nameof(logits));
        Check.NotNull(labels, nameof(labels));
        if (logits.Rank != 3)
        {
            throw new ArgumentException(
                $"logits has shape [{string.Join(", ", logits.Shape)}]; expected per-step logits [T, B, K].",
                nameof(logits)
            );
        }
        if (logits.Shape[1] != labels.Length)
        {
            throw new ArgumentException(
                $"labels has {labels.Length} entries but the logits hold a batch of {logits.Shape[1]}; pass one label per sample.",
                nameof(labels)
            );
        }
        return Readout.correctPerStep(logits, labels);
    }

    /// <summary>Evaluates a model on a whole dataset in eval mode.</summary>
    /// <param name="model">The model (its T sets the deployment lengths evaluated).</param>
    /// <param name="data">Images shaped like the model's input, or event frames (an SNN's T must equal their count).</param>
    /// <param name="batchSize">Samples per forward run ≥ 1.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public static StepAccuracy Evaluate(
        SnnModel model,
        Dataset data,
        int batchSize = 256,
        CancellationToken cancellationToken = default
    )
    {
        Check.NotNull(model, nameof(model));
        Check.NotNull(data, nameof(data));
        Check.Positive(batchSize, nameof(batchSize));
        data.CheckReadableBy(model, null, "data", nameof(data));
        var loader = data.Batches(
            new BatchingOptions
            {
                BatchSize = batchSize,
                Shuffle = false,
                Prefetch = 1,
            }
        );
        return Evaluate(model, loader.Epoch(0), cancellationToken);
    }

    /// <summary>Evaluates a model on a sequence of batches in eval mode.</summary>
    /// <param name="model">The model.</param>
    /// <param name="batches">Input batches with labels.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public static StepAccuracy Evaluate(
        SnnModel model,
        IEnumerable<DataBatch> batches,
        CancellationToken cancellationToken = default
    )
    {
        Check.NotNull(model, nameof(model));
        Check.NotNull(batches, nameof(batches));
        var correct = new int[model.Steps];
        int total = 0;
        foreach (var b in batches)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var logits = model.Forward(b.Inputs).Logits;
            var c = Readout.correctPerStep(logits, b.Labels);
            for (int t = 0; t < c.Length; t++)
            {
                correct[t] += c[t];
            }
            total += b.Labels.Length;
        }
        return new StepAccuracy(correct, total);
    }
}
