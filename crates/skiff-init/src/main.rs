//! The guest's /init. See the library for what it does.

fn main() {
    // First thing: the moment the kernel handed over, for Hello.
    let started = skiff_init::clock::boottime_us();
    if rustix::process::getpid().is_init() {
        skiff_init::guest::run(started);
    }
    eprintln!("skiff-init: must run as PID 1 of a skiff guest (the service is tested through the library)");
    std::process::exit(2);
}
