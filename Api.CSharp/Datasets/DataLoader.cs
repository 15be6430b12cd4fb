using SnnSpec.Data;
using SnnSpec.Facade;

namespace SnnSpec.Datasets;

/// <summary>How a <see cref="DataLoader"/> forms batches.</summary>
public sealed record BatchingOptions
{
    /// <summary>Samples per batch ≥ 1.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Visit samples in a fresh seeded random order each epoch.</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Leave out a last batch smaller than <see cref="BatchSize"/>.</summary>
    public bool DropLast { get; init; }

    /// <summary>Batches prepared ahead on a background thread (0 = on the caller's thread).</summary>
    public int Prefetch { get; init; } = 2;

    /// <summary>Seed of the shuffling order.</summary>
    public int Seed { get; init; }

    internal BatchOptions ToFSharp(bool timeMajor = false)
    {
        Check.Positive(BatchSize, nameof(BatchSize), "BatchingOptions.BatchSize");
        Check.NonNegative(Prefetch, nameof(Prefetch), "BatchingOptions.Prefetch");
        return new BatchOptions(
            BatchSize,
            Shuffle,
            DropLast,
            Prefetch,
            null,
            timeMajor,
            RngModule.create(Seed)
        );
    }
}

/// <summary>One batch: inputs [B, C, H, W] (frame sequences: [T, B, C, H, W]) and labels [B].</summary>
/// <remarks>Both live in buffers the loader reuses: they stay valid until the next batch is requested.</remarks>
public sealed class DataBatch
{
    internal DataBatch(Batch batch)
    {
        Inputs = batch.Inputs;
        Labels = batch.Labels;
        Index = batch.Index;
    }

    /// <summary>Inputs [B, C, H, W] (images, in [0, 1]) or [T, B, C, H, W] (event frames, counts).</summary>
    public Tensor Inputs { get; }

    /// <summary>Labels, one per sample.</summary>
    public int[] Labels { get; }

    /// <summary>Position of the batch within its epoch.</summary>
    public int Index { get; }
}

/// <summary>Epochs of batches over a dataset, filled into reused buffers.</summary>
public sealed class DataLoader
{
    private readonly Batcher batcher;

    internal DataLoader(ISampleSource source, BatchingOptions options)
    {
        Check.NotNull(options, nameof(options));
        batcher = Batching.create(options.ToFSharp(source.SampleShape.Length == 4), source);
        BatchSize = options.BatchSize;
    }

    /// <summary>Samples per full batch.</summary>
    public int BatchSize { get; }

    /// <summary>Batches per epoch.</summary>
    public int BatchesPerEpoch => batcher.BatchesPerEpoch;

    /// <summary>The batches of one epoch, in order (one epoch may be enumerated at a time).</summary>
    /// <param name="epoch">Epoch number ≥ 0 (it seeds the shuffled order).</param>
    public IEnumerable<DataBatch> Epoch(int epoch)
    {
        Check.NonNegative(epoch, nameof(epoch));
        foreach (var b in batcher.Epoch(epoch))
        {
            yield return new DataBatch(b);
        }
    }
}
