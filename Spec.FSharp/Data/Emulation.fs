namespace SnnSpec.Data

open System
open SnnSpec

/// Parameters of the event-camera emulation.
type EmulationOptions =
    {
        /// Log-intensity change that fires one event (the sensor's contrast threshold), e.g. 0.2.
        Threshold: float32
        /// Per-pixel threshold mismatch: each pixel's threshold is Threshold · (1 + σ·z), z ~ N(0, 1) from Key.
        ThresholdMismatch: float32
        /// Intensity floor inside the logarithm: log(I + Floor) with I ∈ [0, 1].
        Floor: float32
        /// Simulation step in µs; all events of a step carry the step's end time.
        StepUs: int
        /// Duration of each of the three saccades in µs.
        SaccadeUs: int
        /// Border added on each side of the image: the sensor is (W + 2·Margin) × (H + 2·Margin).
        Margin: int
        Key: Rng
    }

/// An EMULATION of N-MNIST-style recordings from static images, not a recorded dataset. N-MNIST was
/// made by moving an ATIS sensor in front of each digit in three saccades along a triangle; here the
/// image is moved instead, in three straight saccades of SaccadeUs each through the offsets (−3, −3) →
/// (3, 0) → (−3, 3) → (−3, −3) (pixels, scaled by Margin / 3), sampled bilinearly onto the sensor
/// grid every StepUs. Each sensor pixel keeps a reference log intensity log(I + Floor) and emits an
/// ON event (P = 1) for every threshold its log intensity rises above the reference, an OFF event
/// (P = 0) for every threshold it falls, moving the reference by the thresholds crossed. With the
/// defaults (28×28 input, Margin 3) the sensor is 34×34 and a recording lasts 300 ms, as in N-MNIST.
/// Real sensors add noise, refractory periods and latency that are not modelled.
module Emulation =
    /// Threshold 0.2, no mismatch, floor 0.05, 1 ms steps, 100 ms saccades, margin 3.
    let defaults =
        {
            Threshold = 0.2f
            ThresholdMismatch = 0.0f
            Floor = 0.05f
            StepUs = 1000
            SaccadeUs = 100000
            Margin = 3
            Key = Rng.create 0
        }

    let private vertices = [| -3.0, -3.0; 3.0, 0.0; -3.0, 3.0; -3.0, -3.0 |]

    /// The image offset (dx, dy) in pixels at time t µs.
    let offsetAt (o: EmulationOptions) (t: int64) =
        let total = 3L * int64 o.SaccadeUs
        let t = max 0L (min total t)
        let s = min 2 (int (t / int64 o.SaccadeUs))
        let f = float (t - int64 s * int64 o.SaccadeUs) / float o.SaccadeUs
        let (x0, y0), (x1, y1) = vertices[s], vertices[s + 1]
        let scale = float o.Margin / 3.0
        scale * (x0 + f * (x1 - x0)), scale * (y0 + f * (y1 - y0))

    /// Events of one uint8 image (h × w, row-major at pixels[offset..]) on a (w + 2m) × (h + 2m) sensor,
    /// ordered by time. <c>sampleKey</c> varies the threshold mismatch per image.
    let emulateImage (o: EmulationOptions) (sampleKey: Rng) (pixels: byte[]) (offset: int) (h: int) (w: int) =
        if
            o.Threshold <= 0.0f
            || o.StepUs <= 0
            || o.SaccadeUs <= 0
            || o.Margin < 0
            || o.Floor <= 0.0f
        then
            Errors.invalidArg "Emulation" "options" o "Threshold > 0, Floor > 0, StepUs > 0, SaccadeUs > 0, Margin ≥ 0"

        let sw, sh = w + 2 * o.Margin, h + 2 * o.Margin

        let thresholds =
            Array.init (sw * sh) (fun i ->
                if o.ThresholdMismatch = 0.0f then
                    o.Threshold
                else
                    max
                        (0.1f * o.Threshold)
                        (o.Threshold * (1.0f + o.ThresholdMismatch * Rng.normal sampleKey (int64 i))))

        let intensity (ix: int) (iy: int) =
            if ix < 0 || iy < 0 || ix >= w || iy >= h then
                0.0f
            else
                float32 pixels[offset + iy * w + ix] / 255.0f

        let logAt (dx: float) (dy: float) (sx: int) (sy: int) =
            // Sensor pixel (sx, sy) sees image point (sx − m − dx, sy − m − dy).
            let fx = float sx - float o.Margin - dx
            let fy = float sy - float o.Margin - dy
            let x0 = int (Math.Floor fx)
            let y0 = int (Math.Floor fy)
            let ax = float32 (fx - float x0)
            let ay = float32 (fy - float y0)

            let v =
                (1.0f - ay) * ((1.0f - ax) * intensity x0 y0 + ax * intensity (x0 + 1) y0)
                + ay * ((1.0f - ax) * intensity x0 (y0 + 1) + ax * intensity (x0 + 1) (y0 + 1))

            MathF.Log(v + o.Floor)

        let dx0, dy0 = offsetAt o 0L
        let reference = Array.init (sw * sh) (fun i -> logAt dx0 dy0 (i % sw) (i / sw))
        let events = ResizeArray<Event>()
        let steps = 3 * o.SaccadeUs / o.StepUs

        for s in 1..steps do
            let t = int64 s * int64 o.StepUs
            let dx, dy = offsetAt o t

            for sy in 0 .. sh - 1 do
                for sx in 0 .. sw - 1 do
                    let i = sy * sw + sx
                    let l = logAt dx dy sx sy
                    let th = thresholds[i]
                    let d = l - reference[i]
                    let n = int (MathF.Abs d / th)

                    if n > 0 then
                        let p = if d > 0.0f then 1uy else 0uy

                        for _ in 1..n do
                            events.Add
                                {
                                    X = uint16 sx
                                    Y = uint16 sy
                                    T = t
                                    P = p
                                }

                        reference[i] <- reference[i] + (if d > 0.0f then 1.0f else -1.0f) * float32 n * th

        events.ToArray()

    /// An emulated event set from a single-channel image set (images converted in parallel; image i
    /// uses the key Rng.fold i Key).
    let emulateSet (o: EmulationOptions) (images: ImageSet) =
        if images.Channels <> 1 then
            Errors.invalidArg "Emulation.emulateSet" "images.Channels" images.Channels "1 (grey-scale images)"

        let per = images.SampleSize
        let samples = Array.zeroCreate<Event[]> images.Count

        Kernels.Par.forEach images.Count (fun i ->
            samples[i] <- emulateImage o (Rng.fold i o.Key) images.Pixels (i * per) images.Height images.Width)

        {
            Name = images.Name + " (emulated events)"
            Samples = samples
            Labels = Array.copy images.Labels
            Width = images.Width + 2 * o.Margin
            Height = images.Height + 2 * o.Margin
            Classes = images.Classes
        }
