using Microsoft.FSharp.Core;
using SnnSpec.Facade;
using SnnSpec.HwSim;
using SnnSpec.Models;

namespace SnnSpec.Hardware;

/// <summary>The memory device of the crossbar cells.</summary>
public enum DeviceKind
{
    /// <summary>65 nm resistive RAM (SpikeSim's default).</summary>
    Rram,

    /// <summary>65 nm SRAM crossbars (SpikeSim's SRAM option).</summary>
    Sram,
}

/// <summary>
/// A SpikeFlow-style crossbar in-memory-computing chip. The defaults are SpikeSim's ELA: 65 nm RRAM,
/// 64×64 crossbars, 9 crossbars per PE, 8 PEs per tile, 8:1 column mux, 4-bit ADC, 250 MHz, and its
/// implicit precision (4-bit weights in 4-bit cells, 22-bit membranes).
/// </summary>
public sealed record AcceleratorOptions
{
    /// <summary>Crossbar side X (rows = columns).</summary>
    public int CrossbarSize { get; init; } = 64;

    /// <summary>Crossbars per processing element.</summary>
    public int CrossbarsPerPe { get; init; } = 9;

    /// <summary>PEs per tile.</summary>
    public int PesPerTile { get; init; } = 8;

    /// <summary>Columns sharing one ADC through a column mux.</summary>
    public int ColumnMux { get; init; } = 8;

    /// <summary>ADC resolution in bits.</summary>
    public int AdcBits { get; init; } = 4;

    /// <summary>Clock frequency in MHz.</summary>
    public double ClockMHz { get; init; } = 250;

    /// <summary>Clock cycles per PE cycle.</summary>
    public int ClocksPerPeCycle { get; init; } = 26;

    /// <summary>Fraction in [0, 1] of a layer's outputs after which the next layer starts.</summary>
    public double PipelineOverlap { get; init; } = 0.75;

    /// <summary>Only the first n mapped layers count toward membrane memory (5 in the ELA); null counts every layer.</summary>
    public int? MembraneMemoryLayers { get; init; } = 5;

    /// <summary>The cell device.</summary>
    public DeviceKind Device { get; init; } = DeviceKind.Rram;

    /// <summary>Bits per weight (32 for an FP32 model).</summary>
    public int WeightBits { get; init; } = 4;

    /// <summary>Bits stored per crossbar cell.</summary>
    public int BitsPerCell { get; init; } = 4;

    /// <summary>Bits per stored membrane value (32 for an FP32 model).</summary>
    public int MembraneBits { get; init; } = 22;

    /// <summary>SpikeSim's ELA defaults.</summary>
    public static AcceleratorOptions SpikeSim => new();

    /// <summary>The same chip costing an FP32 model (32-bit weights and membranes).</summary>
    public AcceleratorOptions AsFp32() => this with { WeightBits = 32, MembraneBits = 32 };

    /// <summary>The same chip costing a model quantized as given (null widths mean 32 bits).</summary>
    /// <param name="quantization">The model's bit widths.</param>
    public AcceleratorOptions WithQuantization(QuantizationOptions quantization)
    {
        Check.NotNull(quantization, nameof(quantization));
        quantization.Validate();
        return this with
        {
            WeightBits = quantization.WeightBits ?? 32,
            MembraneBits = quantization.MembraneBits ?? 32,
        };
    }

    internal Accelerator ToFSharp()
    {
        Check.Positive(CrossbarSize, nameof(CrossbarSize), "AcceleratorOptions.CrossbarSize");
        Check.Positive(CrossbarsPerPe, nameof(CrossbarsPerPe), "AcceleratorOptions.CrossbarsPerPe");
        Check.Positive(PesPerTile, nameof(PesPerTile), "AcceleratorOptions.PesPerTile");
        Check.Positive(ColumnMux, nameof(ColumnMux), "AcceleratorOptions.ColumnMux");
        Check.Range(AdcBits, 1, 30, nameof(AdcBits), "AcceleratorOptions.AdcBits");
        Check.Positive(
            ClocksPerPeCycle,
            nameof(ClocksPerPeCycle),
            "AcceleratorOptions.ClocksPerPeCycle"
        );
        Check.Range(WeightBits, 1, 32, nameof(WeightBits), "AcceleratorOptions.WeightBits");
        Check.Range(BitsPerCell, 1, 32, nameof(BitsPerCell), "AcceleratorOptions.BitsPerCell");
        Check.Range(MembraneBits, 1, 32, nameof(MembraneBits), "AcceleratorOptions.MembraneBits");
        if (!(ClockMHz > 0) || double.IsInfinity(ClockMHz))
        {
            throw new ArgumentOutOfRangeException(
                nameof(ClockMHz),
                ClockMHz,
                $"AcceleratorOptions.ClockMHz must be a finite frequency > 0 (got {ClockMHz})."
            );
        }
        if (!(PipelineOverlap >= 0 && PipelineOverlap <= 1))
        {
            throw new ArgumentOutOfRangeException(
                nameof(PipelineOverlap),
                PipelineOverlap,
                $"AcceleratorOptions.PipelineOverlap must lie in [0, 1] (got {PipelineOverlap})."
            );
        }
        if (MembraneMemoryLayers is { } n)
        {
            Check.NonNegative(
                n,
                nameof(MembraneMemoryLayers),
                "AcceleratorOptions.MembraneMemoryLayers"
            );
        }
        var device = Device switch
        {
            DeviceKind.Rram => HwSim.Device.Rram,
            DeviceKind.Sram => HwSim.Device.Sram,
            _ => throw new ArgumentOutOfRangeException(
                nameof(Device),
                Device,
                "Device must be Rram or Sram."
            ),
        };
        var b = AcceleratorModule.spikeSim;
        return new Accelerator(
            CrossbarSize,
            CrossbarsPerPe,
            PesPerTile,
            ColumnMux,
            AdcBits,
            ClockMHz,
            ClocksPerPeCycle,
            PipelineOverlap,
            b.TileBufferBits,
            MembraneMemoryLayers is { } m ? FSharpOption<int>.Some(m) : null,
            b.Spatial,
            new Precision(WeightBits, BitsPerCell, MembraneBits),
            TechnologyModule.ofDevice(device)
        );
    }
}

/// <summary>The functional crossbar datapath: tile size, weight and cell bits, ADC and variation.</summary>
public sealed record CrossbarOptions
{
    /// <summary>Rows per crossbar: inputs are processed in tiles of this many rows.</summary>
    public int Rows { get; init; } = 64;

    /// <summary>Signed weight bits b: weights in [−2^(b−1), 2^(b−1) − 1].</summary>
    public int WeightBits { get; init; } = 4;

    /// <summary>Bits per cell: a weight spans ⌈b / BitsPerCell⌉ slice columns.</summary>
    public int BitsPerCell { get; init; } = 4;

    /// <summary>ADC resolution in 1…30 bits; null is an ideal (exact) read-out.</summary>
    public int? AdcBits { get; init; }

    /// <summary>ADC full scale in cell-level units; null is the largest possible partial sum.</summary>
    public double? AdcFullScale { get; init; }

    /// <summary>Relative spread σ ≥ 0 of multiplicative per-cell conductance variation (0 = none).</summary>
    public double VariationSigma { get; init; }

    /// <summary>Seed of the conductance variation.</summary>
    public int VariationSeed { get; init; }

    /// <summary>An ideal 64-row crossbar with 4-bit weights in 4-bit cells.</summary>
    public static CrossbarOptions Ideal => new();

    internal CrossbarConfig ToFSharp()
    {
        Check.Positive(Rows, nameof(Rows), "CrossbarOptions.Rows");
        Check.Range(WeightBits, 1, 31, nameof(WeightBits), "CrossbarOptions.WeightBits");
        Check.Range(BitsPerCell, 1, 31, nameof(BitsPerCell), "CrossbarOptions.BitsPerCell");
        if (AdcBits is { } ab)
        {
            Check.Range(ab, 1, 30, nameof(AdcBits), "CrossbarOptions.AdcBits");
        }
        if (AdcFullScale is { } fs && !(fs > 0))
        {
            throw new ArgumentOutOfRangeException(
                nameof(AdcFullScale),
                fs,
                $"CrossbarOptions.AdcFullScale must be a positive partial sum (got {fs})."
            );
        }
        if (AdcFullScale is not null && AdcBits is null)
        {
            throw new ArgumentException(
                "CrossbarOptions.AdcFullScale needs AdcBits (an ideal ADC has no full scale).",
                nameof(AdcFullScale)
            );
        }
        if (!(VariationSigma >= 0) || double.IsInfinity(VariationSigma))
        {
            throw new ArgumentOutOfRangeException(
                nameof(VariationSigma),
                VariationSigma,
                $"CrossbarOptions.VariationSigma must be a finite spread >= 0 (got {VariationSigma})."
            );
        }
        var adc = AdcBits is { } bits
            ? Adc.NewQuantized(bits, AdcFullScale is { } f ? FSharpOption<double>.Some(f) : null)
            : Adc.Ideal;
        return new CrossbarConfig(
            Rows,
            WeightBits,
            BitsPerCell,
            adc,
            VariationSigma > 0
                ? FSharpOption<Variation>.Some(new Variation(VariationSigma, VariationSeed))
                : null
        );
    }
}
