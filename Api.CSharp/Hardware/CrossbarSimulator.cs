using SnnSpec.Facade;
using SnnSpec.HwSim;
using SnnSpec.Models;

namespace SnnSpec.Hardware;

/// <summary>
/// Costs SnnSpec models on a crossbar in-memory-computing accelerator (SpikeSim's energy, latency
/// and area model) and runs integer matrix products through the functional crossbar datapath.
/// </summary>
public sealed partial class CrossbarSimulator
{
    /// <summary>A simulator of the given accelerator.</summary>
    /// <param name="accelerator">The chip; null uses SpikeSim's ELA defaults.</param>
    public CrossbarSimulator(AcceleratorOptions? accelerator = null)
    {
        Accelerator = accelerator ?? new AcceleratorOptions();
        _ = Accelerator.ToFSharp(); // validate now, so a bad option fails at construction
    }

    /// <summary>The simulated chip.</summary>
    public AcceleratorOptions Accelerator { get; }

    /// <summary>The cost of running a model.</summary>
    /// <param name="model">The model; its weight layers are mapped kernel-wise onto crossbars.</param>
    /// <param name="quantization">The model's bit widths (null widths are 32-bit); null uses the accelerator's precision.</param>
    /// <param name="steps">Time steps T ≥ 1; null uses the model's T.</param>
    /// <param name="firingRates">Firing rates in [0, 1] by spiking population, "population/maxpool" or weight layer
    /// (e.g. <see cref="ForwardResult.FiringRates"/>): energy then scales with activity (a layer behind a max-pool
    /// without its pooled rate is charged the OR of independent spikes); keys that name none of these are ignored;
    /// null charges every PE cycle densely, as SpikeSim does.</param>
    public CostReport Estimate(
        SnnModel model,
        QuantizationOptions? quantization = null,
        int? steps = null,
        IReadOnlyDictionary<string, float>? firingRates = null
    )
    {
        Check.NotNull(model, nameof(model));
        int t = steps ?? model.Steps;
        Check.Positive(t, nameof(steps), "steps (the number of time steps T)");
        var acc = (
            quantization is null ? Accelerator : Accelerator.WithQuantization(quantization)
        ).ToFSharp();
        var mapping = MappingModule.ofArchitecture(acc, model.Inner.Architecture);
        if (firingRates is null)
        {
            return new CostReport(Metrics.evaluate(t, mapping));
        }
        foreach (var kv in firingRates)
        {
            if (!(kv.Value >= 0f && kv.Value <= 1f))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(firingRates),
                    $"the firing rate of '{kv.Key}' is {kv.Value}; rates must lie in [0, 1]."
                );
            }
        }
        var activity = ActivityModule.ofProbe(mapping.Network, Interop.ToFSharpMap(firingRates));
        return new CostReport(Metrics.evaluateWith(OpCount.DenseMacs, activity, t, mapping));
    }

    /// <summary>Candidate-versus-baseline ratios of two reports of the same network.</summary>
    /// <param name="baseline">E.g. the FP32 teacher.</param>
    /// <param name="candidate">E.g. the quantized student of the same topology.</param>
    /// <exception cref="ArgumentException">The reports are of different networks (the message names the first difference).</exception>
    public static CostComparison Compare(CostReport baseline, CostReport candidate)
    {
        Check.NotNull(baseline, nameof(baseline));
        Check.NotNull(candidate, nameof(candidate));
        try
        {
            return new CostComparison(
                Metrics.compare(baseline.Inner, candidate.Inner),
                baseline,
                candidate
            );
        }
        catch (SnnSpecException e)
        {
            throw new ArgumentException(e.Message, nameof(candidate), e);
        }
    }

    /// <summary>
    /// One read of a binary spike vector through crossbars holding integer weights [inputs, outputs]:
    /// sliced cells, per-tile ADC read-out, shift-and-add and offset subtraction. With an ideal ADC and
    /// no variation the result equals <see cref="ExactMatMul"/>.
    /// </summary>
    /// <param name="weights">Integer weights [inputs, outputs] in the signed range of <see cref="CrossbarOptions.WeightBits"/>.</param>
    /// <param name="spikes">One spike per input.</param>
    /// <param name="options">The datapath; null is an ideal 64-row crossbar with 4-bit weights.</param>
    public static double[] MatMul(int[,] weights, bool[] spikes, CrossbarOptions? options = null)
    {
        Check.NotNull(weights, nameof(weights));
        Check.NotNull(spikes, nameof(spikes));
        var cfg = (options ?? new CrossbarOptions()).ToFSharp();
        if (spikes.Length != weights.GetLength(0))
        {
            throw new ArgumentException(
                $"spikes has {spikes.Length} entries but weights has {weights.GetLength(0)} input rows; pass one spike per input.",
                nameof(spikes)
            );
        }
        CheckRange(weights.Cast<int>(), cfg.WeightBits, nameof(weights));
        return Crossbar.matmul(cfg, weights, spikes);
    }

    /// <summary>The exact integer product Σᵢ xᵢ·wᵢⱼ, the reference of the ideal datapath.</summary>
    /// <param name="weights">Integer weights [inputs, outputs].</param>
    /// <param name="spikes">One spike per input.</param>
    public static long[] ExactMatMul(int[,] weights, bool[] spikes)
    {
        Check.NotNull(weights, nameof(weights));
        Check.NotNull(spikes, nameof(spikes));
        if (spikes.Length != weights.GetLength(0))
        {
            throw new ArgumentException(
                $"spikes has {spikes.Length} entries but weights has {weights.GetLength(0)} input rows; pass one spike per input.",
                nameof(spikes)
            );
        }
        return Crossbar.exact(weights, spikes);
    }

    /// <summary>A convolution (square kernel, no bias) of a spike map through kernel-wise mapped crossbars.</summary>
    /// <param name="weights">Integer weights [C_out, C_in, k, k].</param>
    /// <param name="spikes">A binary spike map [C_in, H, W].</param>
    /// <param name="stride">Stride ≥ 1.</param>
    /// <param name="padding">Zero padding ≥ 0.</param>
    /// <param name="options">The datapath; null is ideal.</param>
    /// <returns>[C_out, H_o, W_o] with H_o = (H + 2·padding − k) / stride + 1.</returns>
    public static double[,,] Conv2d(
        int[,,,] weights,
        bool[,,] spikes,
        int stride = 1,
        int padding = 0,
        CrossbarOptions? options = null
    )
    {
        Check.NotNull(weights, nameof(weights));
        Check.NotNull(spikes, nameof(spikes));
        Check.Positive(stride, nameof(stride));
        Check.NonNegative(padding, nameof(padding));
        var cfg = (options ?? new CrossbarOptions()).ToFSharp();
        if (weights.GetLength(1) != spikes.GetLength(0))
        {
            throw new ArgumentException(
                $"weights take {weights.GetLength(1)} input channels but spikes has {spikes.GetLength(0)}.",
                nameof(spikes)
            );
        }
        CheckRange(weights.Cast<int>(), cfg.WeightBits, nameof(weights));
        return Crossbar.conv2d(cfg, weights, stride, padding, spikes);
    }

    private static void CheckRange(IEnumerable<int> weights, int bits, string name)
    {
        long lo = -(1L << (bits - 1));
        long hi = (1L << (bits - 1)) - 1;
        foreach (var w in weights)
        {
            if (w < lo || w > hi)
            {
                throw new ArgumentOutOfRangeException(
                    name,
                    w,
                    $"weight {w} does not fit {bits}-bit signed weights; allowed range is [{lo}, {hi}] (raise CrossbarOptions.WeightBits or requantize)."
                );
            }
        }
    }
}
