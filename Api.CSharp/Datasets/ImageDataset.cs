using SnnSpec.Data;
using SnnSpec.Facade;

namespace SnnSpec.Datasets;

/// <summary>
/// A labelled image set held compactly as bytes, sample-major [N, C, H, W]; samples become float32
/// in [0, 1] (pixel / 255) when batched.
/// </summary>
public sealed class ImageDataset : Dataset
{
    internal ImageDataset(ImageSet set) => Inner = set;

    internal ImageSet Inner { get; }

    internal override ISampleSource Source => Inner;

    internal override Dataset SubsetOf(int[] indices) => Subset(indices);

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

    /// <inheritdoc />
    public override string Name => Inner.Name;

    /// <summary>Channels C.</summary>
    public int Channels => Inner.Channels;

    /// <summary>Height H.</summary>
    public int Height => Inner.Height;

    /// <summary>Width W.</summary>
    public int Width => Inner.Width;

    /// <inheritdoc />
    public override int Classes => Inner.Classes;

    /// <summary>The samples at the given indices, in that order, as a new set.</summary>
    /// <param name="indices">Indices in [0, Count).</param>
    public ImageDataset Subset(IEnumerable<int> indices) =>
        new(ImageSetModule.subset(Inner, Indices(indices)));

    /// <summary>The first <paramref name="count"/> samples (all of them when fewer).</summary>
    /// <param name="count">Number of samples ≥ 0.</param>
    public ImageDataset Take(int count)
    {
        Check.NonNegative(count, nameof(count));
        return Subset(Enumerable.Range(0, Math.Min(count, Count)));
    }

    /// <summary>The samples at the given indices as a tensor [n, C, H, W] with values in [0, 1].</summary>
    /// <param name="indices">Indices in [0, Count).</param>
    public Tensor ToTensor(IEnumerable<int> indices) =>
        ImageSetModule.toTensor(Inner, Indices(indices));

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name}: {Count} images {Channels}×{Height}×{Width}, {Classes} classes";
}
