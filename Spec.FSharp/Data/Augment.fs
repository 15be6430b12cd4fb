namespace SnnSpec.Data

open System
open SnnSpec

/// Seeded augmentation. Image transforms are <c>SampleTransform</c>s acting in place on one float32
/// sample [C, H, W]; the same key gives the same result. Event transforms map a stream to a new one.
module Augment =
    let private checkShape op c h w =
        if c <= 0 || h <= 0 || w <= 0 then
            Errors.invalidArg op "c, h, w" (c, h, w) "positive sizes"

    /// Applies the transforms in order, transform k drawing from Rng.fold k of the sample's key.
    let compose (transforms: SampleTransform list) : SampleTransform =
        let ts = Array.ofList transforms

        fun key data offset ->
            for k in 0 .. ts.Length - 1 do
                ts[k] (Rng.fold k key) data offset

    /// Random crop with zero padding (torchvision's RandomCrop(size = H × W, padding)): the image is
    /// padded by <c>padding</c> on every side and an H × W window is taken at a uniformly random
    /// position, i.e. the content moves by (dy, dx) ∈ [−padding, padding]² and uncovered pixels are 0.
    let randomCrop (c: int) (h: int) (w: int) (padding: int) : SampleTransform =
        checkShape "Augment.randomCrop" c h w

        if padding < 0 then
            Errors.invalidArg "Augment.randomCrop" "padding" padding "0 or more"

        fun key data offset ->
            // Output (y, x) reads input (y + oy, x + ox).
            let oy = Rng.intBelow key 0L (2 * padding + 1) - padding
            let ox = Rng.intBelow key 1L (2 * padding + 1) - padding

            if oy <> 0 || ox <> 0 then
                for ch in 0 .. c - 1 do
                    let plane = offset + ch * h * w
                    // Rows are visited so that a source row is read before it is overwritten.
                    for r in 0 .. h - 1 do
                        let y = if oy > 0 then r else h - 1 - r
                        let sy = y + oy
                        let row = plane + y * w

                        if sy < 0 || sy >= h then
                            Array.Clear(data, row, w)
                        else
                            let x0 = max 0 (-ox)
                            let x1 = min w (w - ox)

                            if x1 > x0 then
                                Array.Copy(data, plane + sy * w + x0 + ox, data, row + x0, x1 - x0)

                            Array.Clear(data, row, x0)
                            Array.Clear(data, row + max x0 x1, w - max x0 x1)

    /// Mirrors the image left–right with probability p.
    let horizontalFlip (c: int) (h: int) (w: int) (p: float32) : SampleTransform =
        checkShape "Augment.horizontalFlip" c h w

        fun key data offset ->
            if Rng.uniform key 0L < p then
                for r in 0 .. c * h - 1 do
                    Array.Reverse(data, offset + r * w, w)

    /// Cutout (DeVries and Taylor 2017): zeroes a size × size square, in every channel, centred on a
    /// uniformly random pixel and clipped at the borders.
    let cutout (c: int) (h: int) (w: int) (size: int) : SampleTransform =
        checkShape "Augment.cutout" c h w

        if size < 0 then
            Errors.invalidArg "Augment.cutout" "size" size "0 or more"

        fun key data offset ->
            let cy = Rng.intBelow key 0L h
            let cx = Rng.intBelow key 1L w
            let y0, y1 = max 0 (cy - size / 2), min h (cy - size / 2 + size)
            let x0, x1 = max 0 (cx - size / 2), min w (cx - size / 2 + size)

            if x1 > x0 then
                for ch in 0 .. c - 1 do
                    for y in y0 .. y1 - 1 do
                        Array.Clear(data, offset + ch * h * w + y * w + x0, x1 - x0)

    /// (x − mean[c]) / std[c] per channel (deterministic; ignores the key).
    let normalize (h: int) (w: int) (mean: float32[]) (std: float32[]) : SampleTransform =
        if mean.Length <> std.Length || Array.exists (fun s -> s <= 0.0f) std then
            Errors.invalidArg "Augment.normalize" "mean, std" (mean, std) "equal lengths and positive stds"

        let hw = h * w

        fun _ data offset ->
            for ch in 0 .. mean.Length - 1 do
                let s = Span<float32>(data, offset + ch * hw, hw)
                System.Numerics.Tensors.TensorPrimitives.Subtract(s, mean[ch], s)
                System.Numerics.Tensors.TensorPrimitives.Divide(s, std[ch], s)

    /// Events mirrored left–right on a sensor <c>width</c> wide.
    let flipEventsX (width: int) (events: Event[]) =
        events
        |> Array.map (fun e ->
            { e with
                X = uint16 (width - 1 - int e.X)
            })

    /// Events mirrored top–bottom on a sensor <c>height</c> high.
    let flipEventsY (height: int) (events: Event[]) =
        events
        |> Array.map (fun e ->
            { e with
                Y = uint16 (height - 1 - int e.Y)
            })

    /// Events moved by (dx, dy); those leaving the width × height sensor are dropped.
    let shiftEvents (dx: int) (dy: int) (width: int) (height: int) (events: Event[]) =
        events
        |> Array.choose (fun e ->
            let x, y = int e.X + dx, int e.Y + dy

            if x >= 0 && y >= 0 && x < width && y < height then
                Some { e with X = uint16 x; Y = uint16 y }
            else
                None)

    /// With probability p, the stream mirrored left–right.
    let randomFlipEvents (key: Rng) (p: float32) (width: int) (events: Event[]) =
        if Rng.uniform key 0L < p then
            flipEventsX width events
        else
            events

    /// The stream moved by a uniformly random (dx, dy) ∈ [−maxShift, maxShift]².
    let randomShiftEvents (key: Rng) (maxShift: int) (width: int) (height: int) (events: Event[]) =
        let dx = Rng.intBelow key 0L (2 * maxShift + 1) - maxShift
        let dy = Rng.intBelow key 1L (2 * maxShift + 1) - maxShift
        shiftEvents dx dy width height events

    /// Applies an event transform to every sample of a set, sample i with key Rng.fold i key.
    let mapEvents (key: Rng) (f: Rng -> Event[] -> Event[]) (set: EventSet) =
        { set with
            Samples = set.Samples |> Array.mapi (fun i s -> f (Rng.fold i key) s)
        }
