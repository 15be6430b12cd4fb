namespace SnnSpec.HwSim

/// Chip area split by component (µm²).
type AreaComponents =
    {
        Crossbars: float<um2>
        Adcs: float<um2>
        Muxes: float<um2>
        Subtractors: float<um2>
        TempBuffers: float<um2>
        TileBuffers: float<um2>
        HTree: float<um2>
        /// Input/spike memory for every layer's input map.
        InputMemory: float<um2>
        /// Neuron (membrane) memory.
        MembraneMemory: float<um2>
    }

    member c.Total =
        c.Crossbars
        + c.Adcs
        + c.Muxes
        + c.Subtractors
        + c.TempBuffers
        + c.TileBuffers
        + c.HTree
        + c.InputMemory
        + c.MembraneMemory

/// The area a layer owns: its PEs and its share of the global memories (tile overheads are shared).
type LayerArea =
    {
        Layer: string
        Pes: float<um2>
        InputMemory: float<um2>
        MembraneMemory: float<um2>
    }

type AreaReport =
    {
        /// A_PE = P·a_xbar + n_adc·(a_adc + a_mux).
        Pe: float<um2>
        /// A_tile = n_adc·a_sub + a_tmp + a_tilebuf + ppt·A_PE + a_htree.
        Tile: float<um2>
        Tiles: int
        Components: AreaComponents
        Layers: LayerArea list
        /// The script's analog area (ppt·A_PE + n_adc·a_sub)·N_tile.
        Analog: float<um2>
        /// The script's digital area (a_tmp + a_tilebuf + ppt·A_PE)·N_tile + A_inmem (it counts the PEs
        /// in both, as written).
        Digital: float<um2>
    }

    member r.Total = r.Components.Total

/// The ELA area model (methods.md §6.4), n_adc = ⌈X / mux⌉:
/// - A_PE = P·a_xbar + n_adc·(a_adc + a_mux)                                        [6152.1936 µm²]
/// - A_tile = n_adc·a_sub + a_tmp + a_bit·TileBufferBits + ppt·A_PE + a_htree        [596,708.22 µm²]
/// - A_inmem = a_bit · b_in · Σ_l C_in · H_in · W_in, b_in = 22 (the script's factor)
/// - A_neuron = a_bit · b_u · Σ_{first n layers} C_out · H · W, n = 5 in the ELA; b_u replaces the
///   factor 22 (§6.9)
/// - A = N_tile · A_tile + A_inmem + A_neuron.
/// HwSim's extensions, each 1 at the ELA's configuration: a_xbar × (X/64)², a_adc × ADC-bit factor.
/// Area does not depend on T or on activity.
module Area =
    let estimate (m: Mapping) : AreaReport =
        let acc = m.Accelerator
        let t = acc.Technology
        let n = float (Accelerator.adcsPerPe acc)
        let tiles = float m.Tiles
        let ppt = float acc.PesPerTile

        let xbar =
            float acc.CrossbarsPerPe * Accelerator.crossbarFactor acc * t.CrossbarArea

        let adcs = n * Technology.adcFactor t acc.AdcBits * t.AdcArea
        let muxes = n * t.MuxArea
        let pe = xbar + adcs + muxes
        let sub = n * t.SubtractorArea
        let tileBuffer = float acc.TileBufferBits * 1.0<bit> * t.SramBitArea
        let tile = sub + t.TempBufferArea + tileBuffer + ppt * pe + t.HTreeAreaPerTile
        let inBits = float t.InputMemoryBitsPerValue * 1.0<bit> * t.SramBitArea
        let memBits = float acc.Precision.MembraneBits * 1.0<bit> * t.SramBitArea

        let counted =
            match acc.MembraneMemoryLayers with
            | Some k -> k
            | None -> System.Int32.MaxValue

        let layers =
            m.Layers
            |> List.mapi (fun i l ->
                let g = l.Layer

                {
                    Layer = g.Name
                    Pes = float l.Pes * pe
                    InputMemory = inBits * float g.InChannels * float g.InHeight * float g.InWidth
                    MembraneMemory =
                        if i < counted then
                            memBits * float g.OutChannels * float l.MapHeight * float l.MapWidth
                        else
                            0.0<um2>
                })

        let inMem = layers |> List.sumBy (fun l -> l.InputMemory)

        {
            Pe = pe
            Tile = tile
            Tiles = m.Tiles
            Components =
                {
                    Crossbars = tiles * ppt * xbar
                    Adcs = tiles * ppt * adcs
                    Muxes = tiles * ppt * muxes
                    Subtractors = tiles * sub
                    TempBuffers = tiles * t.TempBufferArea
                    TileBuffers = tiles * tileBuffer
                    HTree = tiles * t.HTreeAreaPerTile
                    InputMemory = inMem
                    MembraneMemory = layers |> List.sumBy (fun l -> l.MembraneMemory)
                }
            Layers = layers
            Analog = (ppt * pe + sub) * tiles
            Digital = (t.TempBufferArea + tileBuffer + ppt * pe) * tiles + inMem
        }
