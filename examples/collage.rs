//! The photo collage of the original Clusterduck's README.
//!
//! Three camera spouts (Tokyo, Paris, New York) each send one photo per
//! hour, the hour being the sequence id, in the order their uplink
//! delivers them (a little out of order). Photos are camera-sized: 12 MiB
//! of grey levels by default (4096 x 3072), `--image-bytes N` to change it;
//! they travel out of line, beside the rings (`Launch::large_bytes`). The
//! bundled worker `collage` receives, for each hour, the photo of every
//! camera and stitches them side by side, hour after hour (sequenced from
//! 0). A debugger prints one line per collage on stdout; the report goes to
//! stderr.
//!
//! ```text
//! cargo run --release --example collage -- --hours 24
//! ```

use std::process::ExitCode;

use clusterduck::{Bundling, Dispatcher, Emitter, Node, Topology};

mod args;

/// Cameras around the world, one photo an hour each, stitched into one
/// collage per hour, in order.
#[derive(Debug, clap::Parser)]
#[command(name = "collage")]
struct Flags {
    /// Hours of photos per camera.
    #[arg(long, value_name = "N", default_value_t = 24)]
    hours: u64,
    /// Bytes of each photo, 4:3 (the default: 4096 x 3072 grey levels).
    #[arg(long, value_name = "N", default_value_t = IMAGE_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    image_bytes: u64,
    #[command(flatten)]
    run: args::Run,
}

/// The default photo: 4096 x 3072 grey levels.
const IMAGE_BYTES: u64 = 4096 * 3072;

/// One camera's photo of one hour: grey levels, row by row.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Photo {
    camera: String,
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// Photos of one hour side by side.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Collage {
    cameras: Vec<String>,
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

fn main() -> ExitCode {
    let flags = <Flags as clap::Parser>::parse();
    let (hours, image_bytes, mode) = (flags.hours, flags.image_bytes, flags.run.launch());

    let mut t = Topology::new();
    let (width, height) = dimensions(image_bytes);
    let tokyo = camera(&mut t, "tokyo", hours, width, height);
    let paris = camera(&mut t, "paris", hours, width, height);
    let new_york = camera(&mut t, "new-york", hours, width, height);
    let collage = t.bundled(
        "collage",
        (&tokyo, &paris, &new_york),
        Bundling::sequenced(0),
        |_hour, (a, b, c): (Photo, Photo, Photo), out: &mut Emitter<Collage>| {
            out.emit(stitch(&[a, b, c])?);
            Ok(())
        },
    );

    let launch = mode
        .debug(&collage, |hour, c: Collage| {
            let checksum = c
                .pixels
                .iter()
                .fold(0u32, |s, p| s.wrapping_mul(31).wrapping_add(u32::from(*p)));
            println!(
                "hour={hour:02} collage {}x{} of {} checksum={checksum:08x}",
                c.width,
                c.height,
                c.cameras.join("+")
            );
        })
        .on_event(|event| eprintln!("{event}"));
    args::report(t.launch(launch))
}

/// The width and height of a 4:3 photo of at most `bytes` pixels (at least
/// one of each).
fn dimensions(bytes: u64) -> (u32, u32) {
    let height = ((bytes as f64 * 0.75).sqrt() as u64).max(1);
    let width = (bytes / height).max(1);
    (width as u32, height as u32)
}

/// A camera spout: one photo per hour, pairs of hours swapped as a flaky
/// uplink would deliver them.
fn camera(
    t: &mut Topology,
    name: &'static str,
    hours: u64,
    width: u32,
    height: u32,
) -> Node<Photo> {
    t.spout(name, move |out: &mut Dispatcher<'_, Photo>| {
        let mut order: Vec<u64> = (0..hours).collect();
        for pair in order.chunks_mut(2) {
            pair.reverse();
        }
        for hour in order {
            out.send(hour, shoot(name, hour, width, height))?;
        }
        Ok(())
    })
}

/// A deterministic picture of `camera` at `hour`.
fn shoot(camera: &str, hour: u64, width: u32, height: u32) -> Photo {
    let base = camera.bytes().fold(hour as u8, |s, b| s.wrapping_add(b));
    let pixels = (0..width as usize * height as usize)
        .map(|i| base.wrapping_add((i as u8).wrapping_mul(7)))
        .collect();
    Photo {
        camera: camera.to_owned(),
        width,
        height,
        pixels,
    }
}

/// The photos side by side, row by row.
fn stitch(photos: &[Photo]) -> Result<Collage, String> {
    let height = photos[0].height;
    if let Some(p) = photos.iter().find(|p| p.height != height) {
        return Err(format!(
            "photo of {} is {} rows high, not {height}",
            p.camera, p.height
        ));
    }
    let width = photos.iter().map(|p| p.width).sum();
    let mut pixels = Vec::with_capacity((width * height) as usize);
    for row in 0..height as usize {
        for p in photos {
            let w = p.width as usize;
            pixels.extend_from_slice(&p.pixels[row * w..(row + 1) * w]);
        }
    }
    Ok(Collage {
        cameras: photos.iter().map(|p| p.camera.clone()).collect(),
        width,
        height,
        pixels,
    })
}
