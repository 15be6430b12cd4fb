namespace SnnSpec.Data

open System
open System.IO
open System.Security.Cryptography
open System.Text
open SnnSpec

/// Frame sets of emulated event recordings (Emulation: an N-MNIST-style EMULATION from static
/// grey-scale images, not a recorded dataset), built one image at a time and cached on disk.
module EmulatedFrames =
    /// The frames [T, C, H', W'] of every image: each image's events are emulated (Emulation.emulateImage,
    /// image i with the key Rng.fold i emu.Key, as Emulation.emulateSet) and integrated at once
    /// (Frames.integrateInto), in parallel, so only the counts of the whole set are ever held.
    let ofImages (emu: EmulationOptions) (frames: FrameOptions) (images: ImageSet) : FrameSet =
        if images.Channels <> 1 then
            Errors.invalidArg "EmulatedFrames.ofImages" "images.Channels" images.Channels "1 (grey-scale images)"

        let width, height = images.Width + 2 * emu.Margin, images.Height + 2 * emu.Margin
        let shape = Frames.shape frames width height
        let per = Shape.numel shape
        let pixels = images.SampleSize

        let counts =
            Frames.compactCounts images.Count per (fun i ->
                let events =
                    Emulation.emulateImage
                        emu
                        (Rng.fold i emu.Key)
                        images.Pixels
                        (i * pixels)
                        images.Height
                        images.Width

                let f = Array.zeroCreate<float32> per
                Frames.integrateInto frames width height events f 0
                f)

        {
            Name = images.Name + " (emulated events)"
            Counts = counts
            Labels = Array.copy images.Labels
            Shape = shape
            Classes = images.Classes
        }

    /// Bumped whenever the emulation or the integration changes what a given input produces, so that
    /// older cache files are not reused.
    let private version = 1

    /// A key over the images (pixels, labels, sizes, classes), both option sets (floats by their
    /// bits) and the emulation's version (SHA-256, 24 hex digits).
    let fingerprint (emu: EmulationOptions) (frames: FrameOptions) (images: ImageSet) =
        use h = IncrementalHash.CreateHash HashAlgorithmName.SHA256
        let bits (x: float32) = BitConverter.SingleToInt32Bits x

        let options =
            sprintf
                "v%d|%s|%d|%d|%d|%d|%d|%08x|%08x|%08x|%d|%d|%d|%016x|%d|%A|%d|%b"
                version
                images.Name
                images.Count
                images.Channels
                images.Height
                images.Width
                images.Classes
                (bits emu.Threshold)
                (bits emu.ThresholdMismatch)
                (bits emu.Floor)
                emu.StepUs
                emu.SaccadeUs
                emu.Margin
                emu.Key.Key
                frames.Frames
                frames.SplitBy
                frames.Downsample
                frames.MergePolarity

        h.AppendData(Encoding.UTF8.GetBytes options)
        h.AppendData images.Pixels
        h.AppendData(Runtime.InteropServices.MemoryMarshal.AsBytes(ReadOnlySpan images.Labels))
        Convert.ToHexStringLower(h.GetHashAndReset()).Substring(0, 24)

    /// Where <c>cached</c> keeps the frames of these images and options.
    let cachePath (dir: string) (emu: EmulationOptions) (frames: FrameOptions) (images: ImageSet) =
        Path.Combine(dir, sprintf "emulated-frames-%s.bin" (fingerprint emu frames images))

    /// The frames of <c>ofImages</c>, loaded from <c>path</c> when it holds them, else built and saved
    /// there (atomically). A damaged file is rebuilt.
    let cachedAt (path: string) (emu: EmulationOptions) (frames: FrameOptions) (images: ImageSet) =
        let build () =
            let f = ofImages emu frames images
            Frames.save path f
            f

        if File.Exists path then
            try
                { Frames.load path with
                    Name = images.Name + " (emulated events)"
                }
            with :? DataFormatException ->
                build ()
        else
            build ()

    /// <c>cachedAt</c> the file of these images and options in <c>dir</c> (<c>cachePath</c>).
    let cached (dir: string) (emu: EmulationOptions) (frames: FrameOptions) (images: ImageSet) =
        Directory.CreateDirectory dir |> ignore
        cachedAt (cachePath dir emu frames images) emu frames images
