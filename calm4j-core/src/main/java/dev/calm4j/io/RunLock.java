package dev.calm4j.io;

import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * An exclusive lock on a run's output folder: an OS file lock ({@link FileChannel#tryLock}) on {@code .calm4j.lock}
 * inside it, so a second run on the same folder, in this process or another, is refused at once instead of
 * interleaving its files with the first's. The OS drops the lock when the process dies (even by SIGKILL), so a
 * killed run never leaves the folder locked. The lock file itself stays (deleting it would let two runs lock two
 * different files of the same name), except in a folder the lock itself created and nothing else wrote to: that
 * folder is removed again, so a run refused before it wrote anything leaves nothing behind.
 *
 * <p>Re-entrant for the thread that holds it (the CLI locks the folder before it checks it, and the training loop
 * locks it again); another thread of the same process is refused like another process.
 */
public final class RunLock implements AutoCloseable {
    public static final String FILE = ".calm4j.lock";

    private record Held(Thread owner, FileChannel channel, FileLock lock, int[] count, Path createdDir) {}

    private static final Map<Path, Held> HELD = new HashMap<>();

    private final Path key;
    private final Held held;
    private boolean closed;

    private RunLock(Path key, Held held) {
        this.key = key;
        this.held = held;
    }

    /** Locks {@code out} (created if missing), or refuses with one line when another run holds it. */
    public static RunLock acquire(Path out) {
        Path key;
        boolean created = !Files.exists(out);
        try {
            Files.createDirectories(out);
            key = out.toRealPath();
        } catch (IOException e) {
            throw new Calm4jException(out + ": cannot create directory (" + e.getMessage() + ")");
        }
        synchronized (HELD) {
            Held h = HELD.get(key);
            if (h != null) {
                if (h.owner() != Thread.currentThread()) {
                    throw busy(out);
                }
                h.count()[0]++;
                return new RunLock(key, h);
            }
            Path file = key.resolve(FILE);
            FileChannel ch = null;
            try {
                ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                FileLock lock = ch.tryLock();
                if (lock == null) {
                    ch.close();
                    throw busy(out);
                }
                Held h2 = new Held(Thread.currentThread(), ch, lock, new int[] {1}, created ? key : null);
                HELD.put(key, h2);
                return new RunLock(key, h2);
            } catch (OverlappingFileLockException e) {
                closeQuietly(ch);
                throw busy(out);
            } catch (IOException e) {
                closeQuietly(ch);
                throw new Calm4jException(file + ": cannot lock (" + e.getMessage() + ")");
            }
        }
    }

    private static Calm4jException busy(Path out) {
        return new Calm4jException(out + ": another calm run is using this folder (it holds " + FILE
                + "); wait for it to end or choose another --out");
    }

    /** Releases every lock the current thread holds (the CLI calls it when a command ends). */
    public static void releaseAllOfThisThread() {
        synchronized (HELD) {
            List<Path> mine = new ArrayList<>();
            HELD.forEach((k, h) -> {
                if (h.owner() == Thread.currentThread()) {
                    mine.add(k);
                }
            });
            for (Path k : mine) {
                release(HELD.remove(k));
            }
        }
    }

    @Override
    public void close() {
        synchronized (HELD) {
            if (closed) {
                return;
            }
            closed = true;
            Held h = HELD.get(key);
            if (h == held && --h.count()[0] == 0) {
                HELD.remove(key);
                release(h);
            }
        }
    }

    private static void release(Held h) {
        try {
            h.lock().release();
        } catch (IOException ignored) {
            // closing the channel releases it too
        }
        closeQuietly(h.channel());
        // A run refused before it wrote anything leaves no folder behind when it made the folder itself.
        Path dir = h.createdDir();
        if (dir != null) {
            try (var entries = Files.list(dir)) {
                if (entries.allMatch(p -> p.getFileName().toString().equals(FILE))) {
                    Files.deleteIfExists(dir.resolve(FILE));
                    Files.deleteIfExists(dir);
                }
            } catch (IOException ignored) {
                // something else is there now: keep it
            }
        }
    }

    private static void closeQuietly(FileChannel ch) {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // nothing held any more
            }
        }
    }
}
