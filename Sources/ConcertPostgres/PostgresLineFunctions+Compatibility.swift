extension PostgresLineFunctions {
    /// Migrations 3 and 5's signatures, kept for an instance of the previous release during a
    /// rolling upgrade: each hands over to its new function with migration 5's rate setting.
    static let compatibility: [String] = [
        // The previous signatures hand over (their rate is migration 5's setting, if a wrapper set it).
        """
        CREATE OR REPLACE FUNCTION concertd_queue_advance(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                                          p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, concertd_queue_rate_setting());
        END
        $$
        """,
        """
        CREATE OR REPLACE FUNCTION concertd_queue_advance_if_needed(p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                                    p_active_ms BIGINT, p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM concertd_queue_advance_if_needed(p_concert, p_now, p_max, p_active_ms, p_idle_ms, concertd_queue_rate_setting());
        END
        $$
        """,
        """
        CREATE OR REPLACE FUNCTION concertd_queue_poll(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                       p_active_ms BIGINT, p_idle_ms BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE sql AS $$
          SELECT * FROM concertd_queue_poll(p_token, p_concert, p_now, p_max, p_active_ms, p_idle_ms, concertd_queue_rate_setting())
        $$
        """,
        """
        CREATE OR REPLACE FUNCTION concertd_queue_join(p_user BIGINT, p_concert BIGINT, p_token TEXT, p_now BIGINT, p_max BIGINT,
                                                       p_active_ms BIGINT, p_idle_ms BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT, o_token TEXT,
                       o_created BOOLEAN)
        LANGUAGE sql AS $$
          SELECT * FROM concertd_queue_join(p_user, p_concert, p_token, p_now, p_max, p_active_ms, p_idle_ms,
                                            concertd_queue_rate_setting())
        $$
        """,
        """
        CREATE OR REPLACE FUNCTION concertd_queue_end(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                      p_active_ms BIGINT, p_idle_ms BIGINT) RETURNS boolean
        LANGUAGE sql AS $$
          SELECT concertd_queue_end(p_token, p_concert, p_now, p_max, p_active_ms, p_idle_ms, concertd_queue_rate_setting())
        $$
        """,
        """
        CREATE OR REPLACE FUNCTION concertd_queue_sweep(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                                        p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM concertd_queue_sweep(p_concert, p_now, p_max, p_active_ms, p_idle_ms, concertd_queue_rate_setting());
        END
        $$
        """,
        """
        CREATE OR REPLACE FUNCTION concertd_queue_counts(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                                         p_idle_ms BIGINT) RETURNS TABLE (o_waiting BIGINT, o_active BIGINT)
        LANGUAGE sql AS $$
          SELECT c.o_waiting, c.o_active
          FROM concertd_queue_counts(p_concert, p_now, p_max, p_active_ms, p_idle_ms, concertd_queue_rate_setting()) c
        $$
        """,
    ]
}
