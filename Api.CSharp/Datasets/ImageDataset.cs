using SnnSpec.Data;
using SnnSpec.Facade;

namespace SnnSpec.Datasets;

/// <summary>
/// A labelled image set held compactly as bytes, sample-major [N, C, H, W]; samples become float32
/// in [0, 1] (pixel / 255) when batched.
/// </summary>
public sealed class ImageDataset
{
    internal ImageDataset(ImageSet set) => Inner = set;

    internal ImageSet Inner { get; }

    /// <summary>An image set from raw pixels and labels.</summary>
    /// <param name="name">A display name.</param>
    /// <param name="pixels">N·C·H·W bytes, sample-major [N, C, H, W].</param>
    /// <param name="labels">N labels in [0, classes).</param>
    /// <param name="channels">C ≥ 1.</param>
    /// <param name="height">H ≥ 1.</param>
    /// <param name="width">W ≥ 1.</param>
    /// <param name="classes">Number of classes ≥ 1.</param>
    public static ImageDataset FromPixels(
        string name,
        byte[] pixels,
        int[] labels,
        int channels,
        int height,
        int width,
        int classes
    )
    {
        Check.Name(name, nameof(name));
        Check.NotNull(pixels, nameof(pixels));
        Check.NotNull(labels, nameof(labels));
        Check.Positive(channels, nameof(channels));
        Check.Positive(height, nameof(height));
        Check.Positive(width, nameof(width));
        Check.Positive(classes, nameof(classes));
        long per = (long)channels * height * width;
        if (pixels.LongLength != per * labels.Length)
        {
            throw new ArgumentException(
                $"pixels has {pixels.Length} bytes but {labels.Length} images of {channels}×{height}×{width} need {per * labels.Length}.",
                nameof(pixels)
            );
        }
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] < 0 || labels[i] >= classes)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(labels),
                    $"labels[{i}] = {labels[i]}: every label must be a class in [0, {classes})."
                );
            }
        }
        return new ImageDataset(
            ImageSetModule.create(name, pixels, labels, channels, height, width, classes)
        );
    }

    /// <summary>The set's name, e.g. "MNIST".</summary>
    public string Name => Inner.Name;

    /// <summary>Number of samples.</summary>
    public int Count => Inner.Count;

    /// <summary>Channels C.</summary>
    public int Channels => Inner.Channels;

    /// <summary>Height H.</summary>
    public int Height => Inner.Height;

    /// <summary>Width W.</summary>
    public int Width => Inner.Width;

    /// <summary>Number of classes.</summary>
    public int Classes => Inner.Classes;

    /// <summary>The shape of one sample, [C, H, W].</summary>
    public int[] SampleShape => new[] { Inner.Channels, Inner.Height, Inner.Width };

    /// <summary>A copy of the labels.</summary>
    public int[] Labels => (int[])Inner.Labels.Clone();

    /// <summary>The samples at the given indices, in that order, as a new set.</summary>
    /// <param name="indices">Indices in [0, Count).</param>
    public ImageDataset Subset(IEnumerable<int> indices)
    {
        var idx = Check.NotNull(indices, nameof(indices)).ToArray();
        CheckIndices(idx);
        return new ImageDataset(ImageSetModule.subset(Inner, idx));
    }

    /// <summary>The first <paramref name="count"/> samples (all of them when fewer).</summary>
    /// <param name="count">Number of samples ≥ 0.</param>
    public ImageDataset Take(int count)
    {
        Check.NonNegative(count, nameof(count));
        return Subset(Enumerable.Range(0, Math.Min(count, Count)));
    }

    /// <summary>The samples at the given indices as a tensor [n, C, H, W] with values in [0, 1].</summary>
    /// <param name="indices">Indices in [0, Count).</param>
    public Tensor ToTensor(IEnumerable<int> indices)
    {
        var idx = Check.NotNull(indices, nameof(indices)).ToArray();
        CheckIndices(idx);
        return ImageSetModule.toTensor(Inner, idx);
    }

    private void CheckIndices(int[] idx)
    {
        foreach (var i in idx)
        {
            if (i < 0 || i >= Count)
            {
                throw new ArgumentOutOfRangeException(
                    "indices",
                    i,
                    $"index {i} is outside the set; indices must lie in [0, {Count})."
                );
            }
        }
    }

    /// <summary>Epochs of batches over this set.</summary>
    /// <param name="options">Batch size, shuffling and prefetching; null uses the defaults (64, shuffled).</param>
    public DataLoader Batches(BatchingOptions? options = null) =>
        new(Inner, options ?? new BatchingOptions());

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name}: {Count} images {Channels}×{Height}×{Width}, {Classes} classes";
}

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

    internal BatchOptions ToFSharp()
    {
        Check.Positive(BatchSize, nameof(BatchSize), "BatchingOptions.BatchSize");
        Check.NonNegative(Prefetch, nameof(Prefetch), "BatchingOptions.Prefetch");
        return new BatchOptions(
            BatchSize,
            Shuffle,
            DropLast,
            Prefetch,
            null,
            false,
            RngModule.create(Seed)
        );
    }
}

/// <summary>One batch: inputs [B, C, H, W] and labels [B].</summary>
/// <remarks>Both live in buffers the loader reuses: they stay valid until the next batch is requested.</remarks>
public sealed class DataBatch
{
    internal DataBatch(Batch batch)
    {
        Inputs = batch.Inputs;
        Labels = batch.Labels;
        Index = batch.Index;
    }

    /// <summary>Inputs [B, C, H, W] in [0, 1].</summary>
    public Tensor Inputs { get; }

    /// <summary>Labels, one per sample.</summary>
    public int[] Labels { get; }

    /// <summary>Position of the batch within its epoch.</summary>
    public int Index { get; }
}

/// <summary>Epochs of batches over an image set, filled into reused buffers.</summary>
public sealed class DataLoader
{
    private readonly Batcher batcher;

    internal DataLoader(ImageSet set, BatchingOptions options)
    {
        Check.NotNull(options, nameof(options));
        batcher = Batching.create(options.ToFSharp(), set);
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
