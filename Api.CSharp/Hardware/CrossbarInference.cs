using Microsoft.FSharp.Core;
using SnnSpec.Datasets;
using SnnSpec.Facade;
using SnnSpec.HwSim;
using SnnSpec.Models;

namespace SnnSpec.Hardware;

/// <summary>
/// How a quantized model's integer layers are read through crossbars: tile size, cell bits, the ADC
/// (ideal, a fixed full scale, or full scales calibrated per layer on training data) and conductance
/// variation. Each layer's weight bits are its exported bit width.
/// </summary>
public sealed record CrossbarInferenceOptions
{
    /// <summary>Rows per crossbar: inputs are processed in tiles of this many rows.</summary>
    public int Rows { get; init; } = 64;

    /// <summary>Bits per cell: a weight spans ⌈b / BitsPerCell⌉ slice columns.</summary>
    public int BitsPerCell { get; init; } = 4;

    /// <summary>ADC resolution in 1…16 bits; null is an ideal read-out (the integer path exactly).</summary>
    public int? AdcBits { get; init; }

    /// <summary>
    /// ADC full scale in cell-level units for every layer; null is the largest possible partial sum
    /// of a tile. Needs <see cref="AdcBits"/>; layers calibrated by <see cref="AdcCoverage"/> use theirs.
    /// </summary>
    public double? AdcFullScale { get; init; }

    /// <summary>
    /// With <see cref="AdcBits"/>: calibrate each layer's full scale on <see cref="CalibrationData"/>
    /// so that this share in (0, 1] of its column partial sums is not clipped (e.g. 0.999); null
    /// calibrates nothing.
    /// </summary>
    public double? AdcCoverage { get; init; }

    /// <summary>Training data the full scales are calibrated on (never the test set); needed with <see cref="AdcCoverage"/>.</summary>
    public Dataset? CalibrationData { get; init; }

    /// <summary>Images of <see cref="CalibrationData"/> used for calibration (the first ones), ≥ 1.</summary>
    public int CalibrationImages { get; init; } = 512;

    /// <summary>Relative spread σ ≥ 0 of multiplicative per-cell conductance variation (0 = none).</summary>
    public double VariationSigma { get; init; }

    /// <summary>Seed of the conductance variation: a seed gives one programmed chip.</summary>
    public int VariationSeed { get; init; }

    /// <summary>Ideal 64-row crossbars with 4-bit cells: reproduces the integer path.</summary>
    public static CrossbarInferenceOptions Ideal => new();

    internal void Validate()
    {
        Check.Positive(Rows, nameof(Rows), "CrossbarInferenceOptions.Rows");
        Check.Range(
            BitsPerCell,
            1,
            31,
            nameof(BitsPerCell),
            "CrossbarInferenceOptions.BitsPerCell"
        );
        if (AdcBits is { } ab)
        {
            Check.Range(ab, 1, 16, nameof(AdcBits), "CrossbarInferenceOptions.AdcBits");
        }
        if (AdcFullScale is { } fs && !(fs > 0 && double.IsFinite(fs)))
        {
            throw new ArgumentOutOfRangeException(
                nameof(AdcFullScale),
                fs,
                $"CrossbarInferenceOptions.AdcFullScale must be a positive partial sum (got {fs})."
            );
        }
        if ((AdcFullScale is not null || AdcCoverage is not null) && AdcBits is null)
        {
            throw new ArgumentException(
                "CrossbarInferenceOptions.AdcFullScale and AdcCoverage need AdcBits: an ideal ADC has no full scale. Set AdcBits (e.g. 4).",
                AdcFullScale is not null ? nameof(AdcFullScale) : nameof(AdcCoverage)
            );
        }
        if (AdcCoverage is { } c)
        {
            if (!(c > 0 && c <= 1))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(AdcCoverage),
                    c,
                    $"CrossbarInferenceOptions.AdcCoverage is a share of partial sums in (0, 1] (got {c}), e.g. 0.999."
                );
            }
            if (CalibrationData is null)
            {
                throw new ArgumentException(
                    "CrossbarInferenceOptions.AdcCoverage needs CalibrationData: set it to training images (never the test set).",
                    nameof(CalibrationData)
                );
            }
            Check.Positive(
                CalibrationImages,
                nameof(CalibrationImages),
                "CrossbarInferenceOptions.CalibrationImages"
            );
        }
        if (!(VariationSigma >= 0) || double.IsInfinity(VariationSigma))
        {
            throw new ArgumentOutOfRangeException(
                nameof(VariationSigma),
                VariationSigma,
                $"CrossbarInferenceOptions.VariationSigma must be a finite spread >= 0 (got {VariationSigma})."
            );
        }
    }

    internal HwSim.CrossbarOptions ToFSharp(IReadOnlyDictionary<string, double> fullScales)
    {
        var adc = AdcBits is { } bits
            ? Adc.NewQuantized(bits, AdcFullScale is { } f ? FSharpOption<double>.Some(f) : null)
            : Adc.Ideal;
        return new HwSim.CrossbarOptions(
            Rows,
            BitsPerCell,
            adc,
            Interop.ToFSharpMap(fullScales),
            VariationSigma > 0
                ? FSharpOption<Variation>.Some(new Variation(VariationSigma, VariationSeed))
                : null
        );
    }
}

/// <summary>Accuracies of one test set through crossbars, the integer path and the fake-quantized model.</summary>
public sealed record CrossbarInferenceResult
{
    /// <summary>Accuracy in [0, 1] at the model's T with the integer layers read through crossbars.</summary>
    public required double CrossbarAccuracy { get; init; }

    /// <summary>Accuracy of integer-arithmetic inference (what an ideal crossbar reproduces).</summary>
    public required double IntegerAccuracy { get; init; }

    /// <summary>Accuracy of the fake-quantized float model.</summary>
    public required double FloatAccuracy { get; init; }

    /// <summary>Test samples evaluated.</summary>
    public required int Samples { get; init; }

    /// <summary>The weight layers that ran on crossbars (empty when no layer is integer-exportable).</summary>
    public required IReadOnlyList<string> CrossbarLayers { get; init; }

    /// <summary>Calibrated ADC full scales (cell-level units) by layer; empty without <see cref="CrossbarInferenceOptions.AdcCoverage"/>.</summary>
    public required IReadOnlyDictionary<string, double> FullScales { get; init; }
}

public sealed partial class CrossbarSimulator
{
    /// <summary>
    /// Runs a quantized model on a dataset with every integer (weight → population) layer read
    /// through the functional crossbar datapath, next to the integer path and the fake-quantized
    /// float model. Layers the integer path cannot take (e.g. a full-precision first layer) run as
    /// in the integer path.
    /// </summary>
    /// <param name="model">A quantized model (<see cref="SnnModel.Quantize"/>); integer pairs need a uniform membrane grid, shared scales and hard reset.</param>
    /// <param name="data">Test data the model can read.</param>
    /// <param name="options">The datapath; null is <see cref="CrossbarInferenceOptions.Ideal"/>.</param>
    /// <param name="batchSize">Samples per forward run ≥ 1.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="ArgumentException">The model is full precision, the data does not fit it, or an option is inconsistent (the message names the fix).</exception>
    public static CrossbarInferenceResult EvaluateOnCrossbars(
        SnnModel model,
        Dataset data,
        CrossbarInferenceOptions? options = null,
        int batchSize = 256,
        CancellationToken cancellationToken = default
    ) =>
        EvaluateOnCrossbars(
            model,
            data,
            new[] { options ?? CrossbarInferenceOptions.Ideal },
            batchSize,
            cancellationToken
        )[0];

    /// <summary>
    /// <see cref="EvaluateOnCrossbars(SnnModel, Dataset, CrossbarInferenceOptions?, int, CancellationToken)"/>
    /// for several datapaths (ADCs, chips of a variation study) in one pass over the data: the model
    /// is exported once and the integer path and float model run once per batch. One result per
    /// options, in order.
    /// </summary>
    /// <param name="model">A quantized model.</param>
    /// <param name="data">Test data the model can read.</param>
    /// <param name="options">At least one datapath.</param>
    /// <param name="batchSize">Samples per forward run ≥ 1.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="ArgumentException">As the single-datapath overload, or no options.</exception>
    public static IReadOnlyList<CrossbarInferenceResult> EvaluateOnCrossbars(
        SnnModel model,
        Dataset data,
        IEnumerable<CrossbarInferenceOptions> options,
        int batchSize = 256,
        CancellationToken cancellationToken = default
    )
    {
        Check.NotNull(model, nameof(model));
        Check.NotNull(data, nameof(data));
        Check.NotNull(options, nameof(options));
        Check.Positive(batchSize, nameof(batchSize));
        var all = options.ToArray();
        if (all.Length == 0 || all.Any(o => o is null))
        {
            throw new ArgumentException(
                "options must hold at least one CrossbarInferenceOptions and no null; pass CrossbarInferenceOptions.Ideal for the integer path.",
                nameof(options)
            );
        }
        foreach (var o in all)
        {
            o.Validate();
        }
        if (!model.IsQuantized)
        {
            throw new ArgumentException(
                $"crossbar inference needs a quantized model; {model.Name} is full precision. Quantize it first (model.Quantize(QuantizationOptions.Uniform(4) with {{ UniformMembraneGrid = true }})) and train or calibrate it.",
                nameof(model)
            );
        }
        data.CheckReadableBy(model, null, "data", nameof(data));

        // Calibration reads ideal cells, so options differing only in ADC bits, full scale or
        // variation (the chips of a variation study) share one.
        var calibrations =
            new Dictionary<
                (int, int, double?, Dataset?, int),
                IReadOnlyDictionary<string, double>
            >();
        var fullScales = all.Select(o =>
            {
                var key = (
                    o.Rows,
                    o.BitsPerCell,
                    o.AdcCoverage,
                    o.CalibrationData,
                    o.CalibrationImages
                );
                if (!calibrations.TryGetValue(key, out var scales))
                {
                    scales = Calibrate(model, o, batchSize, cancellationToken);
                    calibrations[key] = scales;
                }
                return scales;
            })
            .ToArray();
        var test = data.Batches(
                new BatchingOptions
                {
                    BatchSize = batchSize,
                    Shuffle = false,
                    Prefetch = 1,
                }
            )
            .Epoch(0)
            .Select(b =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                return Tuple.Create(b.Inputs, b.Labels);
            });
        HwSim.CrossbarAccuracy[] r;
        try
        {
            r = HwSim
                .CrossbarInference.accuracies(
                    Interop.ToFSharpList(all.Select((o, i) => o.ToFSharp(fullScales[i]))),
                    model.Inner,
                    test
                )
                .ToArray();
        }
        catch (SnnSpecException e)
        {
            throw new ArgumentException(e.Message, nameof(options), e);
        }
        return r.Select(
                (a, i) =>
                    new CrossbarInferenceResult
                    {
                        CrossbarAccuracy = a.Crossbar,
                        IntegerAccuracy = a.Integer,
                        FloatAccuracy = a.Float,
                        Samples = a.Samples,
                        CrossbarLayers = a.CrossbarLayers.ToArray(),
                        FullScales = fullScales[i],
                    }
            )
            .ToArray();
    }

    /// <summary>The per-layer full scales of <paramref name="o"/>'s calibration, or none without one.</summary>
    private static IReadOnlyDictionary<string, double> Calibrate(
        SnnModel model,
        CrossbarInferenceOptions o,
        int batchSize,
        CancellationToken cancellationToken
    )
    {
        var fullScales = new Dictionary<string, double>(StringComparer.Ordinal);
        if (o.AdcCoverage is not { } coverage)
        {
            return fullScales;
        }
        var calibration = o.CalibrationData!;
        calibration.CheckReadableBy(
            model,
            null,
            "CalibrationData",
            nameof(CrossbarInferenceOptions.CalibrationData)
        );
        int n = Math.Min(o.CalibrationImages, calibration.Count);
        var inputs = calibration
            .SubsetOf(Enumerable.Range(0, n).ToArray())
            .Batches(
                new BatchingOptions
                {
                    BatchSize = Math.Min(batchSize, n),
                    Shuffle = false,
                    Prefetch = 1,
                }
            )
            .Epoch(0)
            .Select(b =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                return b.Inputs;
            });
        var scales = HwSim.CrossbarInference.calibrateFullScales(
            o.ToFSharp(fullScales),
            coverage,
            model.Inner,
            inputs
        );
        foreach (var kv in scales)
        {
            fullScales[kv.Key] = kv.Value;
        }
        return fullScales;
    }

    /// <summary><see cref="EvaluateOnCrossbars(SnnModel, Dataset, CrossbarInferenceOptions?, int, CancellationToken)"/> on a worker thread.</summary>
    /// <param name="model">A quantized model.</param>
    /// <param name="data">Test data the model can read.</param>
    /// <param name="options">The datapath; null is ideal.</param>
    /// <param name="batchSize">Samples per forward run ≥ 1.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public static Task<CrossbarInferenceResult> EvaluateOnCrossbarsAsync(
        SnnModel model,
        Dataset data,
        CrossbarInferenceOptions? options = null,
        int batchSize = 256,
        CancellationToken cancellationToken = default
    ) =>
        Task.Run(
            () => EvaluateOnCrossbars(model, data, options, batchSize, cancellationToken),
            cancellationToken
        );
}
