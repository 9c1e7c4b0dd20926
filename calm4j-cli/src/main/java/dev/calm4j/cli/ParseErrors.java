package dev.calm4j.cli;

import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.UnmatchedArgumentException;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A command line picocli cannot parse (an unknown option or command, a missing or bad value): what was wrong and,
 * for a misspelling, the closest name, then where the usage is; two lines instead of the whole usage.
 * <pre>
 * calm: error: unknown option '--stpes' for 'calm compose'; did you mean '--steps'?
 * Run 'calm compose --help' for usage.
 * </pre>
 */
final class ParseErrors implements CommandLine.IParameterExceptionHandler {

    @Override
    public int handleParseException(ParameterException ex, String[] args) {
        CommandLine cl = ex.getCommandLine();
        // Arguments picocli did not recognise come first: a misspelt option also makes a required one look missing.
        CommandLine at = cl;
        List<String> unmatched = ex instanceof UnmatchedArgumentException u ? u.getUnmatched() : List.of();
        while (unmatched.isEmpty() && at != null) {
            unmatched = at.getUnmatchedArguments();
            at = unmatched.isEmpty() ? at.getParent() : at;
        }
        if (unmatched.isEmpty()) {
            at = cl;
        }
        PrintWriter err = cl.getErr();
        err.println("calm: error: " + (unmatched.isEmpty() ? message(ex) : unmatched(at, unmatched, ex)));
        err.println("Run '" + at.getCommandSpec().qualifiedName() + " --help' for usage.");
        err.flush();
        return cl.getCommandSpec().exitCodeOnInvalidInput();
    }

    /** picocli's message, as a clause: its first line, without "Error: ", lower case first. */
    static String message(ParameterException ex) {
        String m = String.valueOf(ex.getMessage()).strip();
        if (m.startsWith("Error: ")) {
            m = m.substring("Error: ".length());
        }
        m = m.lines().findFirst().orElse("");
        return m.isEmpty() ? m : Character.toLowerCase(m.charAt(0)) + m.substring(1);
    }

    private static String unmatched(CommandLine cl, List<String> unmatched, ParameterException ex) {
        CommandSpec spec = cl.getCommandSpec();
        String where = " for '" + spec.qualifiedName() + "'";
        String first = unmatched.get(0);
        if (!isOption(first) && !spec.subcommands().isEmpty()) {
            List<String> commands = new ArrayList<>();
            spec.subcommands().forEach((n, sub) -> {
                if (!sub.getCommandSpec().usageMessage().hidden()) {
                    commands.add(n);
                }
            });
            String near = closest(first, commands, null);
            return "unknown command '" + first + "'" + where + (near == null ? "" : "; did you mean '" + near + "'?");
        }
        for (String arg : unmatched) {
            if (isOption(arg)) {
                String name = arg.contains("=") ? arg.substring(0, arg.indexOf('=')) : arg;
                String near = closest(name, optionNames(spec), ex instanceof UnmatchedArgumentException u ? u : null);
                return "unknown option '" + name + "'" + where + (near == null ? "" : "; did you mean '" + near + "'?");
            }
        }
        return "unexpected argument '" + first + "'" + where;
    }

    private static boolean isOption(String arg) {
        return arg != null && arg.startsWith("-") && arg.length() > 1 && !arg.matches("-\\d.*");
    }

    private static List<String> optionNames(CommandSpec spec) {
        List<String> names = new ArrayList<>();
        for (OptionSpec o : spec.options()) {
            if (!o.hidden()) {
                names.addAll(List.of(o.names()));
            }
        }
        return names;
    }

    /**
     * The candidate nearest to {@code typed}: fewest edits (a swap of neighbours is one), if few for its length; else
     * one it is the start of or that starts it ({@code --max-new} for {@code --max-new-tokens}, {@code evaluate} for
     * {@code eval}); else picocli's own suggestion for an option (same first letters). Null when none is close.
     */
    static String closest(String typed, List<String> candidates, UnmatchedArgumentException ex) {
        String t = typed.toLowerCase(Locale.ROOT);
        String best = null;
        int bestDistance = Integer.MAX_VALUE;
        for (String c : candidates) {
            int d = distance(t, c.toLowerCase(Locale.ROOT));
            if (d < bestDistance) {
                best = c;
                bestDistance = d;
            }
        }
        int letters = t.replaceFirst("^-+", "").length();
        if (best != null && bestDistance <= Math.max(1, Math.min(3, letters / 3))) {
            return best;
        }
        String prefixed = null;
        for (String c : candidates) {
            String l = c.toLowerCase(Locale.ROOT);
            boolean related = l.startsWith(t) || t.startsWith(l);
            if (related && letters >= 2 && l.replaceFirst("^-+", "").length() >= 2
                    && (prefixed == null || Math.abs(c.length() - typed.length()) < Math.abs(prefixed.length() - typed.length()))) {
                prefixed = c;
            }
        }
        if (prefixed != null) {
            return prefixed;
        }
        String pick = null;
        if (ex != null && ex.isUnknownOption()) {
            for (String s : ex.getSuggestions()) {
                if (pick == null || distance(t, s) < distance(t, pick)) {
                    pick = s;
                }
            }
        }
        return pick != null && distance(t, pick) <= Math.max(2, letters / 2) ? pick : null;
    }

    /** Edits (insert, delete, replace, swap two neighbours) from {@code a} to {@code b}. */
    static int distance(String a, String b) {
        int[][] d = new int[a.length() + 1][b.length() + 1];
        for (int i = 0; i <= a.length(); i++) {
            d[i][0] = i;
        }
        for (int j = 0; j <= b.length(); j++) {
            d[0][j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                d[i][j] = Math.min(Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
                if (i > 1 && j > 1 && a.charAt(i - 1) == b.charAt(j - 2) && a.charAt(i - 2) == b.charAt(j - 1)) {
                    d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
                }
            }
        }
        return d[a.length()][b.length()];
    }
}
