using SnnSpec.Data;
using SnnSpec.Facade;

namespace SnnSpec.Datasets;

/// <summary>
/// Event-camera recordings integrated into T frames of ON/OFF counts, sample shape [T, 2, H, W]:
/// here N-MNIST-style recordings EMULATED from grey-scale images (three saccades over a 34×34
/// sensor for 28×28 images, 300 ms, as the N-MNIST recordings were made), not recorded ones. Batches
/// are time-major [T, B, 2, H, W]: an SNN reads one frame per step (its T must equal
/// <see cref="Dataset.Frames"/>), an ANN their time-mean, or all of them concatenated when it
/// stacks frames (<see cref="Models.ZooOptions.StackFrames"/>).
/// </summary>
public sealed class EventFrameDataset : Dataset
{
    private readonly ISampleSource source;

    private EventFrameDataset(string name, int classes, ISampleSource source)
    {
        Name = name;
        Classes = classes;
        this.source = source;
    }

    internal override ISampleSource Source => source;

    internal override Dataset SubsetOf(int[] indices) => Subset(indices);

    /// <inheritdoc />
    public override string Name { get; }

    /// <inheritdoc />
    public override int Classes { get; }

    /// <summary>
    /// Emulates the event recordings of every image and integrates each into
    /// <paramref name="frames"/> equal-time frames. The frames are cached in
    /// <paramref name="cacheDirectory"/> keyed by the pixels, labels and options, so the second call
    /// loads them; a damaged cache file is rebuilt.
    /// </summary>
    /// <param name="images">Grey-scale images (one channel).</param>
    /// <param name="frames">Frames T per recording, 1 to 256.</param>
    /// <param name="cacheDirectory">The cache folder; null uses the data cache's "emulated-events" folder (<see cref="DatasetCatalog.CacheRoot"/>); "" disables caching.</param>
    public static EventFrameDataset Emulate(
        ImageDataset images,
        int frames = 4,
        string? cacheDirectory = null
    )
    {
        Check.NotNull(images, nameof(images));
        Check.Range(frames, 1, 256, nameof(frames), "frames");
        if (images.Channels != 1)
        {
            throw new ArgumentException(
                $"{images.Name} has {images.Channels} channels; event emulation reads grey-scale images (1 channel).",
                nameof(images)
            );
        }
        var options = new FrameOptions(frames, SplitBy.ByTime, 1, false);
        var dir = cacheDirectory ?? Path.Combine(DatasetCatalog.CacheRoot, "emulated-events");
        FrameSet set;
        if (dir.Length == 0)
        {
            set = EmulatedFrames.ofImages(Emulation.defaults, options, images.Inner);
        }
        else
        {
            Directory.CreateDirectory(dir);
            set = EmulatedFrames.cached(dir, Emulation.defaults, options, images.Inner);
        }
        return new EventFrameDataset($"event-{images.Name}", set.Classes, set);
    }

    /// <summary>The samples at the given indices, in that order, as a view of this set.</summary>
    /// <param name="indices">Indices in [0, Count).</param>
    public EventFrameDataset Subset(IEnumerable<int> indices) =>
        new(Name, Classes, SampleSource.subset(source, Indices(indices)));

    /// <summary>The first <paramref name="count"/> samples (all of them when fewer).</summary>
    /// <param name="count">Number of samples ≥ 0.</param>
    public EventFrameDataset Take(int count)
    {
        Check.NonNegative(count, nameof(count));
        return Subset(Enumerable.Range(0, Math.Min(count, Count)));
    }

    /// <summary>The samples at the given indices as one time-major tensor [T, n, 2, H, W] of counts.</summary>
    /// <param name="indices">Indices in [0, Count).</param>
    public Tensor ToTensor(IEnumerable<int> indices) =>
        SampleSource.toTensor(true, source, Indices(indices));

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name}: {Count} recordings of {Frames} frames {string.Join("×", StepShape)}, {Classes} classes";
}
