namespace SnnSpec.HwSim

open SnnSpec

/// The bit widths a deployed model is costed at (methods.md §6.9, our parametrisation [R]; the
/// public ELA has no bit-width term).
type Precision =
    {
        /// Bits per weight b_w (32 for an FP32 model).
        WeightBits: int
        /// Bits stored per crossbar cell b_cell (1, 2 or 4 in typical RRAM; the presets use 4, and
        /// wider cells model idealised multi-level devices).
        BitsPerCell: int
        /// Bits per stored membrane value b_u (32 for an FP32 model).
        MembraneBits: int
    }

/// Bit-width rules (methods.md §6.9):
/// - weight slicing: a weight occupies s_w = ⌈b_w / b_cell⌉ adjacent columns, so the column count,
///   PEs, ADC phases and PE cycles of a layer scale with s_w, and every cycle of a sliced layer
///   (s_w > 1) pays one shift-and-add per ADC group;
/// - membrane memory stores b_u bits per value (replacing the ELA's factor 22);
/// - the neuron-update energy scales by b_u / b_ref, b_ref = Technology.ReferenceMembraneBits.
module Precision =
    /// The ELA's implicit configuration: 4-bit weights in one 4-bit cell (s_w = 1, NICE's
    /// default) and 22-bit membranes (the ELA's memory factor), which recovers the public constants.
    let spikeSim =
        {
            WeightBits = 4
            BitsPerCell = 4
            MembraneBits = 22
        }

    /// An FP32 model: b_w = b_u = 32 stored in cells of the given width.
    let fp32 (bitsPerCell: int) =
        {
            WeightBits = 32
            BitsPerCell = bitsPerCell
            MembraneBits = 32
        }

    /// An N-bit quantized model (weights and membranes at N bits, e.g. MD-SNN's MS-N).
    let quantized (bits: int) (bitsPerCell: int) =
        {
            WeightBits = bits
            BitsPerCell = bitsPerCell
            MembraneBits = bits
        }

    /// Raises SnnSpecException naming the first non-positive width.
    let validate (p: Precision) =
        let check name v =
            if v <= 0 then
                Errors.invalidArg "Precision" name v "a positive number of bits"

        check "WeightBits" p.WeightBits
        check "BitsPerCell" p.BitsPerCell
        check "MembraneBits" p.MembraneBits

    /// Columns per weight s_w = ⌈b_w / b_cell⌉.
    let slices (p: Precision) =
        (p.WeightBits + p.BitsPerCell - 1) / p.BitsPerCell

    /// Neuron-update energy multiplier b_u / b_ref.
    let membraneFactor (t: Technology) (p: Precision) =
        float p.MembraneBits / float t.ReferenceMembraneBits
