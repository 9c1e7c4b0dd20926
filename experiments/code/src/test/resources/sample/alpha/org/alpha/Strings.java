package org.alpha;

import java.util.List;

/** String helpers. */
public final class Strings {
    private Strings() {}

    /**
     * Returns {@code true} if the string is {@code null} or empty. Whitespace is not empty.
     *
     * @param s the string, may be null
     * @return whether it is empty
     */
    public static boolean isEmpty(final String s) {
        // null counts as empty
        return s == null || s.isEmpty();
    }

    /**
     * Joins the parts with the separator, e.g. {@code join(",", a, b)} gives {@code "a,b"}. Null parts are skipped.
     */
    public static String join(String separator, String... parts) {
        StringBuilder sb = new StringBuilder();
        for (String p : parts) {
            if (p == null) {
                continue;
            }
            if (sb.length() > 0) {
                sb.append(separator);
            }
            sb.append(p);
        }
        return sb.toString();
    }

    /**
     * Joins the parts with the separator, e.g. {@code join(",", a, b)} gives {@code "a,b"}. Null parts are skipped.
     */
    public static String join(String separator, List<String> parts) {
        return join(separator, parts.toArray(new String[0]));
    }

    /**
     * Counts how often {@link Character#isWhitespace(char) whitespace} or {@link #isEmpty} appear &mdash; a
     * <em>rough</em> count &lt;= the length.
     * <p>Second paragraph.
     */
	public static int countSpaces(String s) {
		int n = 0;
		for (char c : s.toCharArray()) {
			if (Character.isWhitespace(c)) {
				n++;
			}
		}
		return n;
	}

    /** Short. */
    public static String trim(String s) {
        String t = s.strip();
        return t;
    }

    /** {@inheritDoc} */
    @Override
    public String toString() {
        String name = "Strings";
        return name;
    }

    public static int noJavadoc(int a) {
        int b = a + 1;
        return b;
    }
}
